"""``spark-serve plan`` with ``MODELS``: one table of the set against the device."""

from __future__ import annotations

from typing import Any

from ..inputs.stack import Stack
from ..plan.hardware import GIB


def stack_document(stack: Stack, router_port: int) -> dict[str, Any]:
    joint = stack.joint.to_json() if stack.joint else None
    return {
        "models_from": stack.where,
        "router": {"port": router_port, "routes_by": "model"},
        "engines": [
            {
                "name": e.name,
                "model": e.entry.model,
                "variant": e.entry.variant,
                "profile": e.chained.plan.profile.name if e.chained.plan.profile else None,
                "port": e.port,
                "state_dir": e.state_dir,
                "kv_share": e.entry.kv_share,
                "min_seqs": e.entry.min_seqs,
                "note": e.chained.note,
            }
            for e in stack.engines
        ],
        "memory": joint,
    }


def _gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def print_stack(doc: dict[str, Any]) -> None:
    print(f"models:   {len(doc['engines'])} from {doc['models_from']}, one engine each, "
          f"behind one endpoint on port {doc['router']['port']} (routed by the request's model)")  # fmt: skip
    memory = doc["memory"]
    if memory is None:
        for e in doc["engines"]:
            print(
                f"  {e['name']:<24} port {e['port']}  not planned ({e['note'] or 'no checkpoint metadata'})"
            )
        return
    if not memory["fits"]:
        for line in memory["lines"]:
            print(f"  {line}")
        need, budget = _gib(memory["needed_bytes"]), _gib(memory["budget_bytes"])
        print(f"fits:     NO: needs {need} GiB of a {budget} GiB budget ({memory['budget_basis']}); try "
              + ", or ".join(memory["ideas"]))  # fmt: skip
        return
    rows = [
        ("MODEL", "PORT", "WEIGHTS GiB", "ALLOWANCE GiB", "KV B/TOKEN", "KV GiB", "SEQUENCES", "UTILIZATION")
    ]
    by_name = {m["name"]: m for m in memory["models"]}
    for e in doc["engines"]:
        m = by_name.get(e["name"])
        if m is None:
            rows.append((e["name"], str(e["port"]), "", "", "", "", "", ""))
            continue
        util = m["gpu_memory_utilization"]
        rows.append(
            (
                e["name"],
                str(e["port"]),
                _gib(m["weights_bytes"]),
                _gib(m["allowance_bytes"]),
                f"{m['kv_bytes_per_token']:,}",
                _gib(m["kv_cache_bytes"]),
                f"{m['max_concurrent_sequences']} at {m['max_model_len']:,}",
                f"{util:g}" if util is not None else "vLLM's",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    planned = memory["planned_bytes"]
    print(
        f"total:    {_gib(planned)} GiB planned of a {_gib(memory['budget_bytes'])} GiB budget "
        f"({memory['budget_basis']}); the device has {_gib(memory['device_bytes'])} GiB"
    )
    print("fits:     yes; the engines start one at a time, each after the one before is up")
