"""The ``spark-serve`` command line. Flags derive from :mod:`entrypoint.plan.options`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .errors import ExitCode, HardwareUnsupportedError, SettingError, SparkServeError
from .plan.hardware import Device, HardwareTable
from .plan.memory import MemoryPlan
from .plan.options import BY_NAME, OPTIONS, Option
from .plan.profile import Catalog
from .plan.resolve import Plan, builtin_defaults, read_raw, resolve

_SECRET_SETTINGS = frozenset(o.name for o in OPTIONS if o.secret)


def _add_option_flags(parser: argparse.ArgumentParser, options: tuple[Option, ...] = OPTIONS) -> None:
    for option in options:
        if option.flag:
            env = f" [env {option.env}]" if option.env else ""
            parser.add_argument(option.flag, dest=option.name, metavar="VALUE", help=option.help + env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-serve", description="Serve NVFP4 LLMs with vLLM on DGX Spark."
    )
    parser.add_argument("--version", action="version", version=f"spark-serve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    profiles = sub.add_parser("profiles", help="list profiles, variants, repos and hardware needs")
    profiles.add_argument(
        "--profiles-dir", dest="profiles_dir", metavar="VALUE", help="profile directories [env PROFILES_DIR]"
    )
    profiles.add_argument(
        "--hardware", dest="hardware", metavar="VALUE", help="mark fit for this hardware [env HARDWARE]"
    )
    plan = sub.add_parser("plan", help="show every resolved setting, the argv and the environment")
    _add_option_flags(plan)
    plan.add_argument("--json", action="store_true", help="print JSON")
    check = sub.add_parser("check", help="validate every profile × variant against the installed vLLM")
    check.add_argument(
        "--profiles-dir", dest="profiles_dir", metavar="VALUE", help="profile directories [env PROFILES_DIR]"
    )
    download = sub.add_parser("download", help="download and verify the checkpoint into HF_HOME, then stop")
    _add_option_flags(download)
    launch = sub.add_parser("launch", help="resolve, download/verify the checkpoint and exec vLLM")
    _add_option_flags(launch)
    doctor = sub.add_parser(
        "doctor", help="report GPU, memory, disk, Hub, versions, caches, ports and the plan, with fixes"
    )
    _add_option_flags(doctor)
    doctor.add_argument("--json", action="store_true", help="print JSON")
    reset = sub.add_parser(
        "reset", help="forget failed engine starts and wake a halted launcher (restart back-off)"
    )
    reset.add_argument(
        "--state-dir",
        dest="state_dir",
        metavar="VALUE",
        help="the launcher's state directory [env STATE_DIR]",
    )
    from server.settings import SIDECAR_OPTIONS

    sidecar = sub.add_parser("sidecar", help="liveness, readiness, status and metrics for ops (port 8001)")
    _add_option_flags(sidecar, SIDECAR_OPTIONS)
    return parser


def _catalog(env: Mapping[str, str], cli: Mapping[str, Any]) -> Catalog:
    raw = read_raw(BY_NAME["profiles_dir"], env, cli)
    catalog = Catalog.from_path_list(raw[0] if raw else builtin_defaults(env)["profiles_dir"])
    if not catalog.names():
        where = raw[2] if raw else "built-in profiles directory"
        dirs = ", ".join(str(d) for d in catalog.dirs) or "(none)"
        missing = [str(d) for d in catalog.dirs if not d.is_dir()]
        detail = f"{', '.join(missing)} does not exist" if missing else f"no *.yaml profile in {dirs}"
        raise SettingError(
            where, detail, "point PROFILES_DIR at directories holding profile files, e.g. configs/profiles"
        )
    return catalog


def _shown(name: str, value: Any) -> Any:
    return "<redacted>" if name in _SECRET_SETTINGS else value


def plan_document(
    plan: Plan, env: Mapping[str, str], memory: MemoryPlan | None = None, note: str | None = None
) -> dict[str, Any]:
    from .plan.command import build_command, shown_argv

    model = plan.model.path or plan.model.repo or ""
    command = build_command(plan, model, env)
    device = plan.device
    return {
        "hardware": None
        if device is None
        else {
            "key": device.key,
            "name": device.name,
            "compute_capability": device.compute_capability,
            "memory": device.memory,
            "total_bytes": device.total_bytes,
            "available_bytes": device.available_bytes,
            "native_fp4": device.native_fp4,
            "source": device.source,
        },
        "memory": memory.to_json() if memory else None,
        "memory_note": note,
        "profile": plan.profile.name if plan.profile else None,
        "profile_file": str(plan.profile.path) if plan.profile else None,
        "variant": plan.variant,
        "model": {"kind": plan.model.kind, "repo": plan.model.repo, "path": plan.model.path},
        "settings": {
            name: {"value": _shown(name, s.value), "source": s.source, "origin": s.origin}
            for name, s in sorted(plan.settings.items())
        },
        "argv": shown_argv(command.argv),
        "command": shlex.join(shown_argv(command.argv)),
        "env": command.shown_env(),
        "env_unset": list(command.env_unset),
    }


def _print_plan(doc: dict[str, Any]) -> None:
    print(
        f"profile:  {doc['profile'] or '-'}" + (f"  ({doc['profile_file']})" if doc["profile_file"] else "")
    )
    print(f"variant:  {doc['variant'] or '-'}")
    model = doc["model"]
    print(f"model:    {model['path'] or model['repo']} ({model['kind']})")
    print("settings:")
    width = max(len(n) for n in doc["settings"])
    for name, s in doc["settings"].items():
        value = json.dumps(s["value"]) if not isinstance(s["value"], str) else s["value"]
        print(f"  {name:<{width}}  {value}  [{s['source']}: {s['origin']}]")
    if doc.get("hardware"):
        hw = doc["hardware"]
        fp4 = "native FP4" if hw["native_fp4"] else "not native FP4: NVFP4 runs weight-only (Marlin)"
        print(f"hardware: {hw['key']} ({hw['name']}; {hw['memory']} memory; {fp4}) [{hw['source']}]")
    _print_memory(doc.get("memory"), doc.get("memory_note"))
    print("command:")
    print(f"  {doc['command']}")
    print("environment:")
    for key, value in doc["env"].items():
        print(f"  {key}={value}")
    if not doc["env"]:
        print("  (inherited, nothing added)")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _print_memory(memory: dict[str, Any] | None, note: str | None) -> None:
    if memory is None:
        print(f"memory:   not planned ({note or 'no checkpoint metadata'})")
        return
    rows = [
        ("budget", f"{_gb(memory['budget_bytes'])}  ({memory['budget_basis']})"),
        ("weights", f"{_gb(memory['weights_bytes'])}  ({memory['weights_source']})"),
        ("allowance", f"{_gb(memory['allowance_bytes'])}  (runtime overhead, activations, sampler)"),
        (
            "KV per token",
            f"{memory['kv_bytes_per_token']:,} B"
            + (
                f" + {memory['state_bytes_per_sequence']:,} B per sequence"
                if memory["state_bytes_per_sequence"]
                else ""
            ),
        ),
        ("KV cache", f"{_gb(memory['kv_cache_bytes'])}  = {memory['kv_cache_tokens']:,} tokens"),
        (
            "sequences",
            f"{memory['max_concurrent_sequences']} at {memory['max_model_len']:,} tokens"
            f" (max_num_seqs {memory['max_num_seqs']})",
        ),
        (
            "decode ceiling",
            "unknown (no bandwidth figure)"
            if memory["decode_ceiling_tokens_per_s"] is None
            else f"{memory['decode_ceiling_tokens_per_s']:g} tokens/s per sequence"
            f" ({memory['decode_ceiling_at_max_len_tokens_per_s']:g} at full context)",
        ),
        ("fits", "yes" if memory["fits"] else f"NO: needs {_gb(memory['needed_bytes'])}"),
    ]
    if note:
        rows.insert(0, ("checkpoint", note))
    print("memory:")
    for name, value in rows:
        print(f"  {name:<15} {value}")


def _fits(catalog: Catalog, name: str, variant: str | None, device: Device, table: HardwareTable) -> str:
    """Does this profile × variant fit the device? The memory plan where the checkpoint's
    metadata is cached (no network), else the profile's min_memory_gb against the budget."""
    from .hub.metadata import cached_meta
    from .planning import memory_for

    try:
        plan = resolve(catalog, {}, {"profile": name, "variant": variant}, device, table)
    except HardwareUnsupportedError as err:
        return f"no (SM {err.found:g} < {err.needed:g})"
    except SparkServeError:
        return "?"
    assert plan.profile is not None and plan.model.repo is not None
    meta = cached_meta(plan.model.repo, plan.value("revision"))
    if meta is not None:
        return "yes" if memory_for(plan, device, meta, refuse=False).fits else "no (memory)"
    reserve = device.reserve_bytes if device.memory != "dedicated" else 0
    budget = device.total_bytes - reserve if device.memory != "dedicated" else device.total_bytes * 0.9
    need = plan.profile.profile.hardware.min_memory_gb * 1e9
    return "yes" if need <= budget else "no (min memory)"


def cmd_profiles(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .planning import hardware_for

    catalog = _catalog(env, vars(args))
    device, table = hardware_for(env, vars(args))
    rows = [("PROFILE", "VARIANTS", "REPO", "FORMAT", "MIN MEMORY", "MIN CC", f"FITS {device.key}")]
    for loaded in catalog.all():
        p = loaded.profile
        verdicts = {v: _fits(catalog, loaded.name, v, device, table) for v in [None, *p.variants]}
        fits = verdicts.pop(None)
        odd = [f"{v}: {f}" for v, f in verdicts.items() if f != fits]
        rows.append(
            (
                loaded.name,
                ",".join(p.variants) or "-",
                f"{p.repo}@{p.revision}",
                p.quantization,
                f"{p.hardware.min_memory_gb:g} GB",
                f"{p.hardware.min_compute_capability:g}",
                fits + (f" ({'; '.join(odd)})" if odd else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"hardware: {device.label} [{device.source}]")
    return ExitCode.OK


def planned(
    env: Mapping[str, str], cli: Mapping[str, Any], *, network: bool
) -> tuple[Plan, MemoryPlan | None, str | None]:
    """Resolve for this hardware and plan memory from whatever metadata can be had
    without downloading weights; a missing figure is a note, never a failure."""
    from .plan.fit import fit_checkpoint
    from .plan.sizing import apply_memory
    from .planning import checkpoint_meta, hardware_for, info_from, memory_for

    device, table = hardware_for(env, cli)
    plan = resolve(_catalog(env, cli), env, cli, device, table)
    offline = not network or env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        meta = checkpoint_meta(plan, offline=offline, retries=0)
    except SparkServeError as err:
        return plan, None, f"checkpoint metadata unavailable: {err.message}"
    if meta is None:
        return plan, None, "checkpoint metadata is not cached and the Hub is not asked offline"
    plan = fit_checkpoint(plan, info_from(meta, plan), weights_required=False)
    memory = memory_for(plan, device, meta, refuse=False)
    note = f"from {meta.origin}"
    return (apply_memory(plan, memory) if memory.fits else plan), memory, note


def cmd_plan(env: Mapping[str, str], args: argparse.Namespace) -> int:
    cli = vars(args)
    plan, memory, note = planned(env, cli, network=True)
    doc = plan_document(plan, env, memory, note)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_plan(doc)
    return ExitCode.OK


def cmd_check(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .check import load_vllm_surface, run_check

    catalog = _catalog(env, vars(args))
    surface = load_vllm_surface()
    results = run_check(catalog, surface)
    for label, problems in results:
        print(f"{'FAIL' if problems else 'ok  '} {label}")
        for problem in problems:
            print(f"     {problem}")
    failed = sum(1 for _, problems in results if problems)
    print(f"vLLM {surface.version}: {len(results) - failed} passed, {failed} failed")
    return ExitCode.FAILURE if failed else ExitCode.OK


def _resolved_for_hardware(env: Mapping[str, str], cli: Mapping[str, Any]) -> Plan:
    from .planning import hardware_for

    device, table = hardware_for(env, cli)
    return resolve(_catalog(env, cli), env, cli, device, table)


def cmd_launch(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .launch import launch

    launch(_resolved_for_hardware(env, vars(args)), env)  # replaces this process with vLLM


def cmd_download(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .launch import download

    print(download(_resolved_for_hardware(env, vars(args))))
    return ExitCode.OK


def cmd_doctor(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .doctor.gather import gather
    from .doctor.judge import judge

    facts = gather(env, vars(args), planned)
    lines = judge(facts)
    failed = sum(line.status == "fail" for line in lines)
    if args.json:
        doc = {
            "version": __version__,
            "ok": not failed,
            "lines": [line.to_json() for line in lines],
            "plan": plan_document(facts.plan, env, facts.memory, facts.memory_note) if facts.plan else None,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"spark-serve doctor {__version__}")
        width = max(len(line.name) for line in lines)
        for line in lines:
            print(f"{line.status:<5} {line.name:<{width}}  {line.detail}")
            if line.fix and line.status != "ok":
                print(f"{'':<5} {'':<{width}}  fix: {line.fix}")
        counts = {s: sum(line.status == s for line in lines) for s in ("ok", "warn", "fail")}
        print(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return ExitCode.FAILURE if failed else ExitCode.OK


def cmd_reset(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .reset import reset

    print(reset(env, vars(args)))
    return ExitCode.OK


def cmd_sidecar(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from server.main import run

    return run(env, vars(args))


COMMANDS = {
    "sidecar": cmd_sidecar,
    "profiles": cmd_profiles,
    "plan": cmd_plan,
    "check": cmd_check,
    "download": cmd_download,
    "launch": cmd_launch,
    "reset": cmd_reset,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        return int(COMMANDS[args.command](env, args))
    except SparkServeError as err:
        print(f"spark-serve: error: {err}", file=sys.stderr)
        return int(err.exit_code)
    except KeyboardInterrupt:
        return 130
