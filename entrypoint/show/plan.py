"""How ``spark-serve plan`` (and ``doctor --json``) shows a plan: the JSON
document and its text rendering."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..plan.measured import MARGIN, OFF_BY, Calibration, compare
from ..plan.memory import MemoryPlan
from ..plan.options import OPTIONS
from ..plan.redact import REDACTED, shown_value
from ..plan.resolve import Plan

if TYPE_CHECKING:
    from ..cluster.plan import ClusterPlan
    from ..plan.derive import Derived

_SECRET_SETTINGS = frozenset(o.name for o in OPTIONS if o.secret)


def _shown(name: str, value: Any) -> Any:
    return REDACTED if name in _SECRET_SETTINGS else shown_value(value)


def _figure(value: float, unit: str) -> str:
    if unit == "bytes":
        return _gb(value)
    return f"{value:,.0f} tokens" if unit == "tokens" else f"{value:.2f}x"


def measured_doc(plan: Plan, calibration: Calibration | None) -> dict[str, Any] | None:
    """Planned against measured at the newest start of this plan (None: never measured)."""
    from ..plan.chain import start_key

    if calibration is None:
        return None
    newest = calibration.newest(start_key(plan, calibration.vllm))
    if newest is None:
        return None
    rows = compare(newest)
    return {
        "start_id": newest.start_id,
        "date": newest.date,
        "at": newest.at,
        "figures": [
            {"figure": r.figure, "planned": r.planned, "measured": r.measured, "unit": r.unit, "off": r.off}
            for r in rows
        ],
        "warnings": [
            f"{r.figure}: planned {_figure(r.planned, r.unit)}, measured {_figure(r.measured, r.unit)} "
            f"({r.measured / r.planned - 1:+.0%})"
            for r in rows
            if r.warn
        ],
    }


def plan_document(
    plan: Plan,
    env: Mapping[str, str],
    memory: MemoryPlan | None = None,
    note: str | None = None,
    derived: Derived | None = None,
    cluster: ClusterPlan | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    from ..plan.command import build_command, shown_argv

    model = plan.model.path or plan.model.repo or ""
    if cluster is None:
        command = build_command(plan, model, env)
    else:
        command = build_command(plan, model, env, cluster.engine_args(), cluster.env)
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
        "measured": measured_doc(plan, calibration),
        "profile": plan.profile.name if plan.profile else None,
        "profile_file": str(plan.profile.path) if plan.profile and not plan.profile.derived_from else None,
        "derived": None if derived is None else derived.summary(),
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
        "cluster": None if cluster is None else cluster.shown(),
    }


def print_plan(doc: dict[str, Any]) -> None:
    derived = doc.get("derived")
    if derived:
        family = f"family {derived['family']}" if derived["family"] else "no family"
        print(f"profile:  {doc['profile']}  (derived from {derived['from']}; {family})")
        for line in derived["notes"]:
            print(f"  note: {line}")
    else:
        print(
            f"profile:  {doc['profile'] or '-'}"
            + (f"  ({doc['profile_file']})" if doc["profile_file"] else "")
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
    _print_measured(doc.get("measured"))
    cluster = doc.get("cluster")
    if cluster:
        print(
            f"cluster:  {cluster['role']} of {cluster['nodes']} nodes, {cluster['parallel']} parallel; "
            f"Ray head {cluster['head']}; this node {cluster['node_ip']} on {cluster['interface']}"
        )
        for key, s in cluster["env"].items():
            print(f"  {key}={s['value']}  [{s['source']}: {s['origin']}]")
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
        ("allowance", f"{_gb(memory['allowance_bytes'])}  ({_allowance_basis(memory)})"),
        (
            "KV per token",
            f"{memory['kv_bytes_per_token']:,} B"
            + (
                f" + {memory['state_bytes_per_sequence']:,} B per sequence"
                if memory["state_bytes_per_sequence"]
                else ""
            )
            + f"  (blocks of {memory.get('block_tokens', 16):,} tokens)",
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
    if memory.get("utilization_at_start"):
        rows.append(
            ("start check", f"utilization set at start: (MemAvailable − {_gb(memory['precheck_bytes'])} "
             "vLLM holds by its check) ÷ total, rounded down to 1/10,000")
        )  # fmt: skip
    if note:
        rows.insert(0, ("checkpoint", note))
    print("memory:")
    for name, value in rows:
        print(f"  {name:<15} {value}")


def _allowance_basis(memory: dict[str, Any]) -> str:
    source = memory.get("allowance_source") or "hardware table"
    if source.startswith("measured"):
        return f"{source}: what the engine held beyond weights and KV, + {MARGIN:.0%}"
    return "runtime overhead, activations, sampler"


def _print_measured(measured: dict[str, Any] | None) -> None:
    if not measured:
        return
    print(f"measured: start {measured['start_id']} ({measured['date']}), planned against measured")
    for row in measured["figures"]:
        planned, got = _figure(row["planned"], row["unit"]), _figure(row["measured"], row["unit"])
        flag = f"  WARNING: more than {OFF_BY:.0%} apart" if row["off"] > OFF_BY else ""
        print(f"  {row['figure']:<34} planned {planned}, measured {got}{flag}")
