"""The ``spark-serve`` command line. Flags derive from :mod:`entrypoint.plan.options`."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .caches import check_writable
from .cluster.plan import is_cluster
from .errors import ExitCode, HardwareUnsupportedError, SettingError, SparkServeError
from .parser import build_parser
from .plan.hardware import Device, HardwareTable
from .plan.options import BY_NAME, option_value
from .plan.profile import Catalog
from .plan.resolve import resolve
from .secrets import with_file_secrets
from .show.plan import plan_document, print_plan

if TYPE_CHECKING:
    from .plan.memory import MemoryPlan
    from .plan.resolve import Plan


def _fits(catalog: Catalog, name: str, variant: str | None, device: Device, table: HardwareTable) -> str:
    """Does this profile × variant fit the device? The planner's memory plan where the
    checkpoint's metadata is cached (no network), else the profile's min_memory_gb
    against the planner's budget."""
    from .inputs.metadata import cached_meta
    from .plan.chain import memory_for
    from .plan.sizing import plan_budget

    try:
        plan = resolve(catalog, {}, {"profile": name, "variant": variant}, device, table)
    except HardwareUnsupportedError as err:
        return f"no (SM {err.found:g} < {err.needed:g})"
    except SparkServeError:
        return "?"
    assert plan.profile is not None and plan.model.repo is not None
    meta = cached_meta(plan.model.repo, plan.value("revision"))
    if meta is not None:
        memory = memory_for(plan, meta, refuse=False)
        return "yes" if memory is not None and memory.fits else "no (memory)"
    need = plan.profile.profile.hardware.min_memory_gb * 1e9
    return "yes" if need <= plan_budget(plan, device) else "no (min memory)"


def cmd_derive(env: Mapping[str, str], args: argparse.Namespace) -> int:
    """``profiles derive MODEL``: the derived profile as commented YAML on stdout."""
    from .inputs.gather import Reading, derive_for, hardware_for, hub_offline, read_meta
    from .inputs.request import bare_request
    from .plan.derive import profile_name
    from .plan.resolve import select
    from .show.pin import render

    own = {BY_NAME[n].env for n in ("model", "profile", "variant")}
    bare = {k: v for k, v in env.items() if k not in own}
    cli = {"model": args.model, "revision": args.revision, "hardware": args.hardware}
    device, _ = hardware_for(bare, cli)
    reading = Reading(offline=hub_offline(), retries=2, snapshot=True)
    _, model, _ = select(Catalog([]), bare, cli)
    request = bare_request(model, bare, cli, offline=reading.offline) if model.path is None else None
    meta = read_meta(model, request, reading)
    if meta is None:
        raise SettingError(
            "MODEL",
            f"no checkpoint metadata for {args.model}",
            "give a checkpoint directory or a Hub repo id",
        )
    derived = derive_for(model, option_value(BY_NAME["revision"], bare, cli), meta, device, env)
    print(render(derived, args.name or profile_name(args.model), __version__), end="")
    return ExitCode.OK


def cmd_profiles(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .inputs.gather import catalog_for, hardware_for

    if getattr(args, "profiles_command", None) == "derive":
        return cmd_derive(env, args)
    catalog = catalog_for(env, vars(args))
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


def _print_helm(
    env: Mapping[str, str],
    args: argparse.Namespace,
    members: Sequence[tuple[Plan, Mapping[str, str], MemoryPlan | None]],
) -> int:
    """``plan --format helm-values``: a ``modelSpec`` per (plan, environment, memory plan)."""
    import yaml

    from .show.helm import CHART, helm_values_for_set, monitoring_files

    image = env.get("SPARK_SERVE_IMAGE") or f"spark-serve:{__version__}"
    rules, dashboard = monitoring_files(env)
    values = helm_values_for_set(members, image, args.release, rules, dashboard)
    print(f"# {CHART} values from `spark-serve plan --format helm-values` (spark-serve {__version__})")
    print(yaml.safe_dump(values, sort_keys=False), end="")
    return ExitCode.OK


def cmd_plan_stack(env: Mapping[str, str], args: argparse.Namespace) -> int:
    """``plan`` with ``MODELS``: the set planned together, as a table, JSON or Helm values."""
    from .inputs.gather import planned
    from .inputs.stack import plan_stack
    from .show.stack import print_stack, stack_document

    stack = plan_stack(env, vars(args), lambda e, c: planned(e, c, network=True), refuse=False)
    if args.format == "helm-values":
        return _print_helm(env, args, [(e.chained.plan, e.env, e.chained.memory) for e in stack.engines])
    doc = stack_document(stack, option_value(BY_NAME["port"], env, vars(args)))
    if args.json or args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print_stack(doc)
    return ExitCode.OK


def cmd_plan(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .inputs.gather import planned
    from .inputs.stack import models_raw

    cli = vars(args)
    if models_raw(env, cli) is not None:
        return cmd_plan_stack(env, args)
    found = planned(env, cli, network=True)
    if args.format == "helm-values":
        return _print_helm(env, args, [(found.plan, env, found.memory)])
    cluster = None
    if is_cluster(found.plan):
        from .cluster.node import host_cluster

        cluster = host_cluster(found.plan, None, env)
    doc = plan_document(found.plan, env, found.memory, found.note, found.derived, cluster, found.calibration)
    if args.json or args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print_plan(doc)
    return ExitCode.OK


def cmd_check(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .engine.check import load_vllm_surface, run_check
    from .inputs.gather import catalog_for
    from .plan.families import load_families

    catalog = catalog_for(env, vars(args))
    surface = load_vllm_surface()
    results = run_check(catalog, surface, load_families())
    for label, problems in results:
        print(f"{'FAIL' if problems else 'ok  '} {label}")
        for problem in problems:
            print(f"     {problem}")
    failed = sum(1 for _, problems in results if problems)
    print(f"vLLM {surface.version}: {len(results) - failed} passed, {failed} failed")
    return ExitCode.FAILURE if failed else ExitCode.OK


def cmd_launch(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .inputs.stack import models_raw
    from .launch.run import launch, planned_or_recorded

    check_writable(env)
    if models_raw(env, vars(args)) is not None:
        from .launch.stack import launch_stack

        return launch_stack(env, vars(args))  # supervises an engine per model and the router
    launch(planned_or_recorded(env, vars(args)), env)  # replaces this process with vLLM


def cmd_worker(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .launch.run import planned_or_recorded
    from .launch.worker import worker

    check_writable(env)
    worker(planned_or_recorded(env, vars(args)), env)  # replaces this process with `ray start --block`


def cmd_download(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .inputs.stack import models_raw
    from .launch.run import download, planned_or_recorded

    check_writable(env)
    if models_raw(env, vars(args)) is not None:  # every model of the set, once the set fits
        from .inputs.gather import for_launch
        from .inputs.stack import plan_stack

        for engine in plan_stack(env, vars(args), for_launch, refuse=True).engines:
            print(download(engine.chained))
        return ExitCode.OK
    print(download(planned_or_recorded(env, vars(args))))
    return ExitCode.OK


def cmd_doctor(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .doctor.gather import gather
    from .doctor.judge import judge
    from .inputs.gather import planned
    from .inputs.stack import models_raw

    plan_doc: dict[str, object] | None = None
    if models_raw(env, vars(args)) is not None:
        from .doctor.stack import doctor_stack
        from .show.stack import stack_document

        lines, stack = doctor_stack(env, vars(args), planned)
        if stack is not None:
            plan_doc = stack_document(stack, option_value(BY_NAME["port"], env, vars(args)))
    else:
        facts = gather(env, vars(args), planned)
        lines = judge(facts)
        if facts.plan:
            plan_doc = plan_document(
                facts.plan, env, facts.memory, facts.memory_note, facts.derived, calibration=facts.calibration
            )
    failed = sum(line.status == "fail" for line in lines)
    if args.json:
        doc = {
            "version": __version__,
            "ok": not failed,
            "lines": [line.to_json() for line in lines],
            "plan": plan_doc,
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


def cmd_cluster_token(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .cluster.node import new_token

    token = new_token()
    if not args.path:
        print(token)
        return 0
    try:
        fd = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise SettingError(
            f"cluster-token {args.path}",
            f"cannot create it: {err.strerror}",
            "name a new file in a writable folder (an existing token is never overwritten)",
        ) from err
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    print(
        f"wrote a new Ray token to {args.path} (mode 0600); copy it to the same path on every other "
        f"Spark (e.g. scp -p {args.path} spark-2:{args.path}) and set CLUSTER_TOKEN_FILE={args.path}"
    )
    return 0


def cmd_reset(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from .launch.reset import reset

    print(reset(env, vars(args)))
    return ExitCode.OK


def cmd_bench(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench.run import bench, request_from
    from .launch.guard import say

    if args.benchy_args and args.benchy_args[0] == "--":
        args.benchy_args = args.benchy_args[1:]
    request = request_from(env, args)
    bench(request, Path(env.get("HOME", "/tmp")), say)
    print((request.out / "results.md").read_text(encoding="utf-8"))
    if request.compare:
        print((request.out / "compare.md").read_text(encoding="utf-8"))
    print(f"results: {request.out} (results.md, results.json, concurrency.png, llama-benchy.log)")
    return ExitCode.OK


def cmd_sidecar(env: Mapping[str, str], args: argparse.Namespace) -> int:
    from server.main import run

    return run(env, vars(args))


COMMANDS = {
    "sidecar": cmd_sidecar,
    "bench": cmd_bench,
    "profiles": cmd_profiles,
    "plan": cmd_plan,
    "check": cmd_check,
    "download": cmd_download,
    "launch": cmd_launch,
    "worker": cmd_worker,
    "reset": cmd_reset,
    "cluster-token": cmd_cluster_token,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(words[0] if words else None).parse_args(words)
    try:
        env = with_file_secrets(os.environ if environ is None else environ)
        return int(COMMANDS[args.command](env, args))
    except SparkServeError as err:
        print(f"spark-serve: error: {err}", file=sys.stderr)
        return int(err.exit_code)
    except KeyboardInterrupt:
        return 130


def run() -> NoReturn:
    """``spark-serve`` and ``python -m entrypoint``: :func:`main`, then the exit. Before
    it, ``gc.freeze()`` spares the interpreter's final collection over every object the
    command made (some 20 ms of a 200 ms ``plan``, measured here); buffers are flushed,
    atexit handlers and module teardown run as ever."""
    code = main()
    gc.freeze()
    raise SystemExit(code)
