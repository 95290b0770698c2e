"""The one pure chain after resolution: fit the checkpoint, then size it.

``resolve`` (once, with the derived profile when no profile names the model)
→ :func:`fitted` (fit against the checkpoint's metadata, then the memory plan)
→ :func:`on_disk` after a download (the same fit against the files on disk;
sized from them when no metadata could be had before) → ``command``. Nothing
here reads a file or the network: the metadata comes in as values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..meta import CheckpointMeta
from .checkpoint import CheckpointInfo, describe
from .command import engine_flags
from .fit import fit_checkpoint
from .measured import Calibration, applied, calibration_key
from .memory import MemoryInputs, MemoryPlan, plan_memory
from .resolve import Plan
from .sizing import apply_memory, memory_inputs, refuse_unless_fits

if TYPE_CHECKING:
    from .derive import Derived


@dataclass(frozen=True)
class Chained:
    """A resolved plan, fitted and sized where metadata allowed; ``note`` says why not."""

    plan: Plan
    memory: MemoryPlan | None = None
    derived: Derived | None = None
    note: str | None = None
    calibration: Calibration | None = None  # what earlier starts measured (STATE_DIR)
    inputs: MemoryInputs | None = None  # what the memory plan was computed from


def info_from(meta: CheckpointMeta, plan: Plan, where: str | None = None) -> CheckpointInfo:
    shown = where or plan.model.path or f"{plan.model.repo}@{plan.value('revision')}"
    shards = meta.weights.total > 0 or any(f.endswith(".safetensors") for f in meta.files)
    return describe(meta.config, meta.hf_quant, path=shown, has_weights=shards)


def start_key(plan: Plan, vllm: str) -> str:
    """The key an engine start of this plan is measured under (:mod:`.measured`)."""
    model = plan.model.path or f"{plan.model.repo}@{plan.value('revision')}"
    return calibration_key(model, plan.device.key if plan.device else "", vllm, engine_flags(plan))


def memory_for(
    plan: Plan, meta: CheckpointMeta, *, refuse: bool, calibration: Calibration | None = None
) -> MemoryPlan | None:
    """The memory plan for the device the plan was resolved for (None without one),
    with what an earlier start of it measured; with ``refuse``, a plan that does not
    fit is the typed error."""
    return sized_for(plan, meta, refuse=refuse, calibration=calibration)[1]


def sized_for(
    plan: Plan, meta: CheckpointMeta, *, refuse: bool, calibration: Calibration | None = None
) -> tuple[MemoryInputs | None, MemoryPlan | None]:
    """:func:`memory_for` with the planner's inputs (a set of models plans them together)."""
    device = plan.device
    if device is None:
        return None, None
    measured = applied(calibration, start_key(plan, calibration.vllm)) if calibration else None
    inputs = memory_inputs(plan, device, meta.config, meta.weights, measured)
    memory = plan_memory(device, inputs)
    if refuse:
        refuse_unless_fits(plan, device, inputs, memory)
    return inputs, memory


def _sized(plan: Plan, memory: MemoryPlan | None) -> Plan:
    return apply_memory(plan, memory) if memory is not None and memory.fits else plan


def fitted(
    plan: Plan,
    meta: CheckpointMeta,
    *,
    refuse: bool,
    derived: Derived | None = None,
    note: str | None = None,
    calibration: Calibration | None = None,
) -> Chained:
    """Fit the resolved plan to the checkpoint's metadata (weights may not be here
    yet) and size it; with ``refuse`` a checkpoint that does not fit the device is
    the typed error, before the first weight byte."""
    plan = fit_checkpoint(plan, info_from(meta, plan), weights_required=False)
    inputs, memory = sized_for(plan, meta, refuse=refuse, calibration=calibration)
    return Chained(_sized(plan, memory), memory, derived, note, calibration, inputs)


def on_disk(chained: Chained, local: CheckpointMeta, directory: str) -> Chained:
    """The check against the downloaded (or mounted) files: the same fit with the
    local metadata, weights required; sized from them when nothing was sized before."""
    plan = fit_checkpoint(chained.plan, info_from(local, chained.plan, directory))
    if chained.memory is not None:
        return replace(chained, plan=plan)
    inputs, memory = sized_for(plan, local, refuse=True, calibration=chained.calibration)
    return replace(chained, plan=_sized(plan, memory), memory=memory, inputs=inputs)
