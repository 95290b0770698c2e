"""Plan ↔ memory planner (pure): build the planner's inputs from a resolved plan,
refuse what does not fit, and put the planner's engine settings into the plan.

A setting the user gave (environment or flag) always wins over the planner's.
"""

from __future__ import annotations

from typing import Any

from ..errors import MemoryTooSmallError
from ..meta import WeightSizes
from .hardware import GIB, Device
from .measured import Applied
from .memory import MemoryInputs, MemoryPlan, budget, vllm_default_batching, what_would_fit
from .resolve import Plan, Setting
from .shape import ModelShape, model_shape

_USERS = ("env", "cli")
DEFAULT_MAX_MODEL_LEN = 8192  # when neither the plan nor the checkpoint says


def _budget_terms(plan: Plan, device: Device) -> tuple[float | None, bool, int]:
    """The plan's utilization (and whether the user set it) and its reserve in bytes."""
    util = plan.settings.get("gpu_memory_utilization")
    reserve_gb = plan.value("memory_reserve_gb")
    return (
        util.value if util is not None and util.value is not None else None,
        util is not None and util.source in _USERS,
        int(reserve_gb * GIB) if reserve_gb is not None else device.reserve_bytes,
    )


def plan_budget(plan: Plan, device: Device) -> int:
    """The planner's budget for this plan on ``device`` before any checkpoint is read."""
    return budget(device, *_budget_terms(plan, device))[0]


def memory_inputs(
    plan: Plan, device: Device, config: dict[str, Any], weights: WeightSizes, measured: Applied | None = None
) -> MemoryInputs:
    shape: ModelShape = model_shape(config)
    seqs, tokens = vllm_default_batching(device)
    spec = plan.value("speculative_config") or {}
    util, users, reserve = _budget_terms(plan, device)
    return MemoryInputs(
        shape=shape,
        weights=weights,
        kv_cache_dtype=plan.value("kv_cache_dtype"),
        max_model_len=plan.value("max_model_len") or shape.max_position_embeddings or DEFAULT_MAX_MODEL_LEN,
        max_num_seqs=plan.value("max_num_seqs") or seqs,
        max_num_batched_tokens=plan.value("max_num_batched_tokens") or tokens,
        language_model_only=bool(plan.value("language_model_only")),
        mtp=spec.get("method") == "mtp",
        num_speculative_tokens=int(spec.get("num_speculative_tokens") or 0),
        prefix_caching=plan.value("enable_prefix_caching") is not False,
        utilization=util,
        utilization_is_users=users,
        kv_cache_memory_bytes=plan.value("kv_cache_memory_bytes"),
        reserve_bytes=reserve,
        nodes=int(plan.value("cluster_nodes") or 1),
        parallel=str(plan.value("cluster_parallel") or "tensor"),
        measured_non_kv=measured.non_kv_bytes if measured else None,
        measured_precheck=measured.precheck_bytes if measured else None,
        measured_source=measured.source if measured else "",
    )


def refuse_unless_fits(plan: Plan, device: Device, inputs: MemoryInputs, memory: MemoryPlan) -> None:
    if memory.fits:
        return
    what = plan.profile.name if plan.profile else (plan.model.repo or plan.model.path or "the model")
    raise MemoryTooSmallError(
        f"{what} on {device.key}",
        memory.needed_bytes,
        memory.budget_bytes,
        memory.budget_basis,
        what_would_fit(device, inputs, memory),
    )


def apply_memory(plan: Plan, memory: MemoryPlan) -> Plan:
    """The planner's explicit KV size and start-check utilization, unless the user set them."""
    why = f"memory planner: {memory.memory_kind} memory on {memory.hardware}"
    if memory.explicit_kv and memory.kv_cache_bytes > 0:
        plan = plan.with_setting(
            "kv_cache_memory_bytes",
            Setting(memory.kv_cache_bytes, "plan", f"{why}, KV for {memory.kv_cache_tokens} tokens"),
        )
    current = plan.settings.get("gpu_memory_utilization")
    if memory.gpu_memory_utilization is not None and (current is None or current.source not in _USERS):
        when = (
            f"set at start to (MemAvailable − {memory.precheck_bytes / GIB:.1f} GiB vLLM holds by its "
            "start check) ÷ total, so the check passes; this is its value at the budget"
            if memory.utilization_at_start
            else "passes vLLM's start check"
        )
        plan = plan.with_setting(
            "gpu_memory_utilization", Setting(memory.gpu_memory_utilization, "plan", f"{why}, {when}")
        )
    return plan
