"""Several models planned together into one device's memory (pure).

Each model was planned alone by the one chain (weights, allowance, KV bytes per token
and per sequence, its ``max_model_len`` and ``max_num_seqs``). Together they share one
budget (the device's, less the reserve): every engine holds its weights and its
allowance, and the rest, the KV room, is divided:

1. each model first gets its floor, ``min_seqs`` (at least 1) sequences at its
   ``max_model_len``; a set whose floors do not fit is refused, a line per model;
2. a model with a ``kv_share`` gets that share of the room (never under its floor);
3. the others share what is left so that each holds the same number of sequences
   at its ``max_model_len`` (a model's KV grows with its bytes per sequence), none
   beyond its ``max_num_seqs``; what one cannot use goes to the others.

Each engine then gets its KV as ``--kv-cache-memory-bytes``; its utilization is set
at start from MemAvailable as for one model, and the engines start one at a time,
so each start check sees the engines before it. The plan's utilization for model *i*
is the one it would get with the engines before it holding what they planned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .hardware import GIB, Device
from .memory import MemoryInputs, MemoryPlan, budget, plan_memory, start_utilization


@dataclass(frozen=True)
class Member:
    """One model of the set as the chain planned it alone."""

    name: str  # its served model name
    inputs: MemoryInputs
    alone: MemoryPlan
    kv_share: float | None = None
    min_seqs: int | None = None

    @property
    def sequence_bytes(self) -> int:
        return self.alone.max_model_len * self.alone.kv_bytes_per_token + self.alone.state_bytes_per_sequence

    @property
    def fixed_bytes(self) -> int:
        return self.alone.weights_bytes + self.alone.allowance_bytes

    @property
    def floor_bytes(self) -> int:
        return max(self.min_seqs or 1, 1) * self.sequence_bytes

    @property
    def demand_bytes(self) -> int:
        return max(self.alone.max_num_seqs, self.min_seqs or 1) * self.sequence_bytes


@dataclass(frozen=True)
class JointPlan:
    hardware: str
    device_bytes: int
    reserve_bytes: int
    budget_bytes: int
    budget_basis: str
    members: tuple[tuple[str, MemoryPlan], ...]  # each with its share of the KV room
    needed_bytes: int  # every model's weights, allowance and floor
    fits: bool
    lines: tuple[str, ...]  # a line per model
    ideas: tuple[str, ...]  # what would fit, when the set does not

    def to_json(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware,
            "device_bytes": self.device_bytes,
            "reserve_bytes": self.reserve_bytes,
            "budget_bytes": self.budget_bytes,
            "budget_basis": self.budget_basis,
            "needed_bytes": self.needed_bytes,
            "planned_bytes": sum(_use(m) for _, m in self.members),
            "fits": self.fits,
            "models": [{"name": name, **memory.to_json()} for name, memory in self.members],
            "lines": list(self.lines),
            "ideas": list(self.ideas),
        }


def _use(memory: MemoryPlan) -> int:
    return memory.weights_bytes + memory.allowance_bytes + memory.kv_cache_bytes


def joint_reserve(device: Device, members: list[Member]) -> int:
    return max((m.inputs.reserve_bytes for m in members), default=device.reserve_bytes)


def joint_budget(device: Device, members: list[Member]) -> tuple[int, str]:
    return budget(device, None, False, joint_reserve(device, members))


def divide(room: int, members: list[Member]) -> list[int] | None:
    """Each member's KV bytes from ``room`` (None: the floors and shares do not fit)."""
    kv = [m.floor_bytes for m in members]
    for i, m in enumerate(members):
        if m.kv_share is not None:
            kv[i] = min(max(kv[i], int(m.kv_share * room)), max(m.demand_bytes, kv[i]))
    if sum(kv) > room:
        return None
    open_ = [i for i, m in enumerate(members) if m.kv_share is None and kv[i] < m.demand_bytes]
    spare = room - sum(kv)
    while open_ and spare > 0:  # the same added sequences each, each up to its demand
        per_sequence = sum(members[i].sequence_bytes for i in open_)
        if per_sequence <= 0:
            break
        sequences = spare / per_sequence
        capped = [
            i for i in open_ if kv[i] + sequences * members[i].sequence_bytes >= members[i].demand_bytes
        ]
        if not capped:
            for i in open_:
                kv[i] += int(sequences * members[i].sequence_bytes)
            break
        for i in capped:
            spare -= members[i].demand_bytes - kv[i]
            kv[i] = members[i].demand_bytes
        open_ = [i for i in open_ if i not in capped]
    return kv


def _line(m: Member, memory: MemoryPlan | None = None) -> str:
    what = (
        f"{m.name}: weights {m.alone.weights_bytes / GIB:.2f} GiB"
        f" + allowance {m.alone.allowance_bytes / GIB:.2f} GiB"
        f" + {max(m.min_seqs or 1, 1)} sequence(s) at {m.alone.max_model_len:,} tokens "
        f"{m.floor_bytes / GIB:.2f} GiB"
    )
    if memory is not None:
        what += (
            f"; KV {memory.kv_cache_bytes / GIB:.2f} GiB = {memory.max_concurrent_sequences} sequences"
            f" at {memory.max_model_len:,} tokens"
        )
    return what


def _ideas(device: Device, members: list[Member], room_for_kv: int) -> list[str]:
    """What would fit, each checked by dividing again."""
    ideas: list[str] = []
    for m in members:
        rest = [o for o in members if o is not m]
        room = joint_budget(device, rest)[0] - sum(o.fixed_bytes for o in rest)
        if rest and divide(room, rest) is not None:
            ideas.append(f"dropping {m.name}")
    if any((m.min_seqs or 1) > 1 for m in members):
        fewer = [replace(m, min_seqs=None, kv_share=None) for m in members]
        if divide(room_for_kv, fewer) is not None:
            ideas.append("fewer min_seqs")
    worst = max(members, key=lambda m: m.floor_bytes)
    others = sum(m.floor_bytes for m in members if m is not worst)
    spare = room_for_kv - others - worst.alone.state_bytes_per_sequence * max(worst.min_seqs or 1, 1)
    per_token = worst.alone.kv_bytes_per_token * max(worst.min_seqs or 1, 1)
    if per_token and spare > 0 and spare // per_token >= 256:
        ideas.append(f"max_model_len {int(spare // per_token // 256 * 256)} or less for {worst.name}")
    return ideas or ["fewer or smaller models, or hardware with more memory"]


def plan_joint(device: Device, members: list[Member]) -> JointPlan:
    total_budget, basis = joint_budget(device, members)
    fixed = sum(m.fixed_bytes for m in members)
    room = max(total_budget - fixed, 0)
    needed = fixed + sum(m.floor_bytes for m in members)
    kv = divide(room, members) if total_budget >= fixed else None
    reserve = joint_reserve(device, members)
    if kv is None:
        lines = tuple(_line(m) for m in members)
        return JointPlan(
            device.key, device.total_bytes, reserve, total_budget, basis, (), needed, False, lines,
            tuple(_ideas(device, members, room)),
        )  # fmt: skip
    planned: list[tuple[str, MemoryPlan]] = []
    held = 0  # what the engines started before this one hold
    for m, kv_bytes in zip(members, kv, strict=True):
        memory = plan_memory(device, replace_inputs(m.inputs, kv_bytes))
        utilization = memory.gpu_memory_utilization
        if memory.utilization_at_start and device.total_bytes:
            utilization = start_utilization(total_budget - held, memory.precheck_bytes, device.total_bytes)
        memory = replace(memory, explicit_kv=True, fits=True, gpu_memory_utilization=utilization)
        held += _use(memory)
        planned.append((m.name, memory))
    lines = tuple(_line(m, memory) for m, (_, memory) in zip(members, planned, strict=True))
    return JointPlan(
        device.key, device.total_bytes, reserve, total_budget, basis, tuple(planned), needed, True, lines, ()
    )


def replace_inputs(inputs: MemoryInputs, kv_bytes: int) -> MemoryInputs:
    return replace(inputs, kv_cache_memory_bytes=kv_bytes)
