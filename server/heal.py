"""Ending a hung engine so its restart policy brings it back.

Why a signal from the sidecar: a hung vLLM keeps answering ``/health`` 200, so
neither Docker's health check (which restarts nothing under compose) nor the
engine's own process notices. The launcher execs vLLM, so the PID in its state
file is vLLM's API server; with the PID's start time it names that process and
no other (a reused PID never matches). SIGTERM first, so vLLM drains for its
``--shutdown-timeout``; SIGKILL (the process and its children) when it has not
exited :data:`KILL_GRACE_S` after that. The engine's exit ends its container, and
``restart: unless-stopped`` starts it again, warm from the cache volumes.

Loops are bounded twice over: a heal needs :data:`~server.checks` to call an
*up* start hung, and heals keep a back-off (``HEAL_BACKOFF_S``, doubled for each
heal in a row of a start that never got ready); a healed start that never got
ready also counts as a failed start for the launcher's own restart back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import psutil

from entrypoint.errors import StateUnwritableError
from entrypoint.state import HEALS_FILE, read_document, write_document

KILL_GRACE_S = 30.0  # beyond the drain timeout, for vLLM to free its memory and exit
MAX_BACKOFF_S = 1800.0
KEEP = 20  # heal records kept in heals.json
EXIT_POLL_S = 0.5


@dataclass(frozen=True)
class HealRecord:
    at: float
    start_id: str
    pid: int
    reason: str
    was_ready: bool  # the healed start had answered its warm-up
    signal: str  # the last signal sent: SIGTERM, or SIGKILL when it did not exit in time
    exited: bool | None = None  # None while waiting for the exit

    @classmethod
    def from_json(cls, data: Any) -> HealRecord | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                float(data["at"]),
                str(data["start_id"]),
                int(data["pid"]),
                str(data["reason"]),
                bool(data["was_ready"]),
                str(data["signal"]),
                None if data.get("exited") is None else bool(data["exited"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def records(data: Any) -> list[HealRecord]:
    found = [HealRecord.from_json(item) for item in data] if isinstance(data, list) else []
    return sorted((r for r in found if r is not None), key=lambda r: r.at)


def backoff_left(history: Sequence[HealRecord], now: float, base_s: float) -> float:
    """Seconds until another heal is allowed (0: now)."""
    if not history:
        return 0.0
    never_ready = 0
    for record in reversed(history):
        if record.was_ready:
            break
        never_ready += 1
    gap = base_s if never_ready == 0 else min(base_s * 2 ** (never_ready - 1), MAX_BACKOFF_S)
    return max(history[-1].at + gap - now, 0.0)


def find_engine(pid: Any, started_at: Any) -> psutil.Process | None:
    """The engine process the launcher recorded, or None when it is gone, a
    zombie, or the PID now names another process."""
    if not isinstance(pid, int) or not isinstance(started_at, (int, float)):
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - float(started_at)) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _exited(proc: psutil.Process, within: float, sleep: Callable[[float], Awaitable[None]]) -> bool:
    waited = 0.0
    while _running(proc):
        if waited >= within:
            return False
        await sleep(EXIT_POLL_S)
        waited += EXIT_POLL_S
    return True


async def end_engine(
    proc: psutil.Process,
    drain_s: float,
    on_escalate: Callable[[], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """After the SIGTERM: SIGKILL the process and its children when it has not
    exited within ``drain_s`` + :data:`KILL_GRACE_S`; True once it has exited."""
    if await _exited(proc, drain_s + KILL_GRACE_S, sleep):
        return True
    on_escalate()
    with contextlib.suppress(psutil.Error):
        family = [*proc.children(recursive=True), proc]
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.kill()
    return await _exited(proc, KILL_GRACE_S, sleep)


def not_found(pid: Any) -> str:
    return (
        f"engine PID {pid} not found: it has exited, or the sidecar does not share the engine's "
        "PID namespace (compose: both services have pid: service:pidns)"
    )


class Healer:
    """Ends a hung engine at most once per start, with a back-off between heals;
    each heal is kept in ``heals.json`` so a restarted sidecar keeps the back-off."""

    def __init__(
        self, enabled: bool, backoff_s: float, state_dir: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.enabled, self.backoff_s, self.state_dir, self.clock = enabled, backoff_s, state_dir, clock
        self.history = records(read_document(state_dir, HEALS_FILE))
        self.total = 0  # heals by this sidecar process (the counter)
        self.blocked: str | None = None  # why a hung engine was not ended
        self.task: asyncio.Task[None] | None = None

    def _save(self, record: HealRecord) -> None:
        self.history = [*(r for r in self.history if r.at != record.at), record][-KEEP:]
        with contextlib.suppress(StateUnwritableError):  # read-only STATE_DIR: kept in memory only
            write_document(self.state_dir, HEALS_FILE, [r.to_json() for r in self.history])

    def consider(self, state: dict[str, Any] | None, hung: str | None, was_ready: bool) -> None:
        """Heal when ``hung`` names why the engine of ``state``'s start is hung."""
        self.blocked = None
        if hung is None or self.busy():
            return
        state = state or {}
        start_id, pid = state.get("start_id"), state.get("pid")
        if not self.enabled:
            self.blocked = "HEAL=0: the engine is left as it is"
        elif state.get("phase") != "starting" or not start_id:
            self.blocked = "the launcher has not started an engine"
        elif any(r.start_id == start_id for r in self.history):
            self.blocked = "this engine start was already healed; waiting for its restart"
        elif (left := backoff_left(self.history, self.clock(), self.backoff_s)) > 0:
            self.blocked = f"heal back-off: the next heal is allowed in {left:.0f}s (HEAL_BACKOFF_S)"
        elif (proc := find_engine(pid, state.get("pid_started_at"))) is None:
            self.blocked = not_found(pid)
        else:
            self._begin(
                proc,
                HealRecord(self.clock(), str(start_id), proc.pid, hung, was_ready, "SIGTERM"),
                float(state.get("shutdown_timeout") or 0),
            )

    def _begin(self, proc: psutil.Process, record: HealRecord, drain_s: float) -> None:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            self.blocked = not_found(record.pid)
            return
        except psutil.AccessDenied:
            self.blocked = (
                f"not permitted to signal engine PID {record.pid}: run the sidecar as the engine's user"
            )
            return
        self.total += 1
        self._save(record)
        self.task = asyncio.create_task(self._finish(proc, record, drain_s))

    async def _finish(self, proc: psutil.Process, record: HealRecord, drain_s: float) -> None:
        current = [record]

        def escalate() -> None:
            current[0] = replace(record, signal="SIGKILL")
            self._save(current[0])

        exited = await end_engine(proc, drain_s, escalate)
        self._save(replace(current[0], exited=exited))

    def busy(self) -> bool:
        """A heal is waiting for the engine to exit."""
        return self.task is not None and not self.task.done()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "total": self.total,
            "blocked": self.blocked,
            "in_progress": self.busy(),
            "recent": [r.to_json() for r in self.history[-5:]],
        }
