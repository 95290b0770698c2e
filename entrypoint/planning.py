"""The side-effecting edges of planning: which device, which checkpoint metadata.

``plan``, ``profiles`` and ``launch`` share these. The decisions themselves
are pure (:mod:`entrypoint.plan`); this module only gathers their inputs:
NVML and ``/proc/meminfo``, and the checkpoint's JSON from a local directory,
spark-serve's metadata cache or the Hub (never a weight byte).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .detect import choose, nvml_facts, read_meminfo
from .hub.metadata import CheckpointMeta, cached_meta, hub_meta, local_meta
from .plan.checkpoint import CheckpointInfo, describe
from .plan.hardware import Device, HardwareTable, load_table
from .plan.memory import MemoryPlan, plan_memory
from .plan.options import BY_NAME
from .plan.resolve import Plan, read_raw
from .plan.sizing import memory_inputs, refuse_unless_fits


def hardware_for(env: Mapping[str, str], cli: Mapping[str, Any]) -> tuple[Device, HardwareTable]:
    table = load_table()
    raw = read_raw(BY_NAME["hardware"], env, cli)
    return choose(table, (raw[0], raw[2]) if raw else None, nvml_facts, read_meminfo), table


def checkpoint_meta(plan: Plan, *, offline: bool, retries: int) -> CheckpointMeta | None:
    """The checkpoint's metadata without its weights; None when it cannot be had
    without a download (offline and not cached). Raises the typed Hub errors."""
    if plan.model.path is not None:
        return local_meta(Path(plan.model.path)) if Path(plan.model.path).is_dir() else None
    assert plan.model.repo is not None
    cached = cached_meta(plan.model.repo, plan.value("revision"))
    if cached is not None or offline:
        return cached
    from .locate import download_request

    return hub_meta(replace(download_request(plan, offline=False), retries=retries))


def info_from(meta: CheckpointMeta, plan: Plan) -> CheckpointInfo:
    where = plan.model.path or f"{plan.model.repo}@{plan.value('revision')}"
    return describe(meta.config, meta.hf_quant, path=where, has_weights=meta.weights.total > 0)


def memory_for(plan: Plan, device: Device, meta: CheckpointMeta, *, refuse: bool) -> MemoryPlan:
    inputs = memory_inputs(plan, device, meta.config, meta.weights)
    memory = plan_memory(device, inputs)
    if refuse:
        refuse_unless_fits(plan, device, inputs, memory)
    return memory
