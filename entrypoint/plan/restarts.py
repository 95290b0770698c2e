"""When to start the engine again (pure): the restart back-off and the start guard's need.

Every exit of the engine feeds the container's restart policy, and on a DGX
Spark each crash can leave unified memory behind that only a reboot returns:
a crash → restart → out-of-memory loop has wedged Sparks after a few dozen
cycles. Docker's own restart delay and ``on-failure:N`` count reset once a
container has run for 10 seconds, which a loading engine always does, so
neither breaks that loop. The launcher does: it remembers its recent engine
starts (``starts.json``), and a start that never answered ready and was
followed by another within :data:`WINDOW_S` counts as failed. Failed starts in
a row with the same argv delay the next one (``RESTART_BACKOFF_S``, doubling,
at most :data:`MAX_DELAY_S`); at ``RESTART_LIMIT`` the launcher halts instead
of starting, and stays up, so the restart policy sees nothing to restart.
A changed argv, a start that reached ready, or ``spark-serve reset`` resets it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .memory import VLLM_DEFAULT_UTILIZATION, MemoryPlan

WINDOW_S = 1800.0  # a start followed by another within this, never ready, failed
MAX_DELAY_S = 300.0
KEEP = 20  # start records kept


@dataclass(frozen=True)
class StartRecord:
    id: str
    at: float
    fingerprint: str

    @classmethod
    def from_json(cls, data: Any) -> StartRecord | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["id"]), float(data["at"]), str(data["fingerprint"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class BackoffPolicy:
    limit: int  # failed starts in a row that halt the launcher; 0: never back off
    base_s: float

    def delay(self, failed: int) -> float:
        return 0.0 if failed <= 0 else min(self.base_s * 2 ** (failed - 1), MAX_DELAY_S)


@dataclass(frozen=True)
class BackoffDecision:
    failed: int  # failed starts in a row with this argv
    delay_s: float
    halt: bool

    def reason(self) -> str:
        starts = f"{self.failed} engine start{'s' if self.failed != 1 else ''}"
        if self.halt:
            return f"{starts} in a row failed before ready; halted instead of starting again"
        return f"{starts} in a row failed before ready; waiting {self.delay_s:g}s before the next"


def fingerprint(argv: Sequence[str]) -> str:
    """Identifies an engine command line (secrets already redacted)."""
    return hashlib.sha256(json.dumps(list(argv)).encode()).hexdigest()[:16]


def records(data: Any) -> list[StartRecord]:
    found = [StartRecord.from_json(item) for item in data] if isinstance(data, list) else []
    return sorted((r for r in found if r is not None), key=lambda r: r.at)


def failed_in_a_row(history: Sequence[StartRecord], argv_id: str, ready_id: str | None, now: float) -> int:
    """Failed starts with this argv, newest first, until one that reached ready,
    one with other arguments, or a gap longer than the window."""
    failed, following = 0, now
    for record in sorted(history, key=lambda r: r.at, reverse=True):
        if record.fingerprint != argv_id or record.id == ready_id or following - record.at > WINDOW_S:
            break
        failed, following = failed + 1, record.at
    return failed


def decide_backoff(
    history: Sequence[StartRecord], argv_id: str, ready_id: str | None, now: float, policy: BackoffPolicy
) -> BackoffDecision:
    if policy.limit <= 0:
        return BackoffDecision(0, 0.0, False)
    failed = failed_in_a_row(history, argv_id, ready_id, now)
    if failed >= policy.limit:
        return BackoffDecision(failed, 0.0, True)
    return BackoffDecision(failed, policy.delay(failed), False)


def remember(history: Sequence[StartRecord], record: StartRecord) -> list[dict[str, Any]]:
    kept = [*history, record][-KEEP:]
    return [{"id": r.id, "at": r.at, "fingerprint": r.fingerprint} for r in kept]


def start_need_bytes(memory: MemoryPlan, utilization: float | None) -> int:
    """Memory that must be available before the engine is started.

    vLLM refuses to start on a GPU when less than ``ceil(utilization × total)`` is
    free at its check (``request_memory``), which it reads once its own processes
    hold ``precheck_bytes``: so that much more. Where the launcher sets the
    utilization at start (unified memory, :func:`~entrypoint.plan.memory.start_utilization`)
    the check passes by construction, and the need is weights + KV cache + the
    allowance (or the pre-check use, where that is larger), as on the host (the CPU
    build, whose explicit KV size skips its check).
    """
    own = memory.weights_bytes + memory.kv_cache_bytes + memory.allowance_bytes
    if memory.memory_kind == "host":
        return own
    if memory.utilization_at_start:
        return max(own, memory.weights_bytes + memory.kv_cache_bytes + memory.precheck_bytes)
    util = utilization if utilization is not None else VLLM_DEFAULT_UTILIZATION
    checked = math.ceil(memory.device_bytes * util) + memory.precheck_bytes
    return max(checked, own if memory.memory_kind == "unified" else 0)
