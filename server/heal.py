"""Ending a hung engine so its restart policy brings it back, with the evidence first.

Why a signal from the sidecar: a hung vLLM keeps answering ``/health`` 200, so
neither Docker's health check (which restarts nothing under compose) nor the
engine's own process notices. The launcher execs vLLM, so the PID in its state
file is vLLM's API server; its start time in clock ticks since boot (a clock no
NTP step moves) names that process and no other.

Before any signal the sidecar writes the evidence (:func:`write_evidence`):
the reason, the last counters and gauges, GPU power and utilization during the
stall, and every engine process (state, CPU time, threads) to
``$STATE_DIR/heals/<time>-<start_id>.json``. Then, in order:

1. SIGABRT to the API server's child processes (the engine core and its
   workers, where a hang lives). The launcher sets ``PYTHONFAULTHANDLER=1``,
   so each writes every thread's Python stack to the engine's log before it
   ends: the stacks need no privilege beyond the signal the sidecar already
   sends (``py-spy`` would need ptrace, which the sidecar does not have).
2. SIGTERM to the API server, so vLLM drains for its ``--shutdown-timeout``.
3. SIGABRT to whatever is left :data:`KILL_GRACE_S` after that (its stacks too),
4. SIGKILL :data:`ABORT_GRACE_S` later (a stopped process handles nothing else).

The engine's exit ends its container, and ``restart: unless-stopped`` starts it
again, warm from the cache volumes.

Loops are bounded twice over: a heal needs :mod:`server.checks` to call an *up*
start hung, and heals keep a back-off (``HEAL_BACKOFF_S``, doubled for each
heal in a row of a start that never got ready); a healed start that never got
ready also counts as a failed start for the launcher's own restart back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from entrypoint.errors import StateUnwritableError
from entrypoint.plan.redact import shown_argv
from entrypoint.state import HEALS_FILE, read_document, start_ticks, write_document

KILL_GRACE_S = 30.0  # beyond the drain timeout, for vLLM to free its memory and exit
ABORT_GRACE_S = 10.0  # after SIGABRT, for faulthandler to write the stacks and the process to end
HEALS_DIR = "heals"  # under STATE_DIR: one evidence file per heal
STACKS = (
    "written by each engine process to the engine's log on SIGABRT (PYTHONFAULTHANDLER): "
    "look for 'Fatal Python error: Aborted' in `docker compose logs vllm`"
)
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
    signal: str  # the last signal sent to the API server: SIGTERM, SIGABRT or SIGKILL
    exited: bool | None = None  # None while waiting for the exit
    evidence: str | None = None  # the evidence file under STATE_DIR/heals/

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
                None if data.get("evidence") is None else str(data["evidence"]),
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


def _protected() -> set[int]:
    """PID 1, this process and its ancestors: never a heal's target."""
    own = {1, os.getpid()}
    with contextlib.suppress(psutil.Error):
        own |= {p.pid for p in psutil.Process().parents()}
    return own


def same_command(cmdline: Sequence[str], argv: Sequence[str]) -> bool:
    """Whether a process's command line is the one the launcher exec'd (``argv``, as recorded,
    secrets redacted). The kernel runs a script through its interpreter, so only the words
    after ``argv[0]`` must match, at the end of the command line."""
    if len(argv) < 2 or len(cmdline) < len(argv) - 1:
        return False
    return shown_argv(cmdline)[len(cmdline) - len(argv) + 1 :] == list(argv[1:])


def find_engine(pid: Any, ticks: Any, argv: Any) -> psutil.Process | None:
    """The engine process the launcher recorded, or None when it is gone, a zombie, or
    the PID now names another process. Three things name it: the PID, its start in
    clock ticks since boot (a clock no NTP step moves) and the command line the launcher
    exec'd; and it is never PID 1, the sidecar or one of the sidecar's ancestors."""
    if not isinstance(pid, int) or not isinstance(ticks, int) or not isinstance(argv, list):
        return None
    if pid in _protected():
        return None
    try:
        proc = psutil.Process(pid)
        if start_ticks(pid) != ticks or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if not same_command(proc.cmdline(), [str(w) for w in argv]):
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


def family(proc: psutil.Process) -> list[psutil.Process]:
    """The API server's children (engine core, workers), then the API server."""
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    return [*children, proc]


def _signal_all(members: Sequence[psutil.Process], signum: signal.Signals) -> int:
    sent = 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            member.send_signal(signum)
            sent += 1
    return sent


def processes(proc: psutil.Process) -> list[dict[str, Any]]:
    """What can be read of each engine process without privilege (for the evidence)."""
    rows: list[dict[str, Any]] = []
    for member in family(proc):
        try:
            with member.oneshot():
                cpu = member.cpu_times()
                rows.append(
                    {
                        "pid": member.pid,
                        "name": member.name(),
                        "status": member.status(),
                        "threads": member.num_threads(),
                        "cpu_user_s": round(cpu.user, 2),
                        "cpu_system_s": round(cpu.system, 2),
                        "rss_bytes": member.memory_info().rss,
                    }
                )
        except psutil.Error:
            continue
    return rows


async def end_engine(
    proc: psutil.Process,
    drain_s: float,
    on_escalate: Callable[[str], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """After the SIGTERM: SIGABRT what is left of the family when the API server has not
    exited within ``drain_s`` + :data:`KILL_GRACE_S`, SIGKILL :data:`ABORT_GRACE_S` later;
    True once it has exited."""
    if await _exited(proc, drain_s + KILL_GRACE_S, sleep):
        return True
    on_escalate("SIGABRT")
    members = family(proc)
    _signal_all(members, signal.SIGABRT)
    if await _exited(proc, ABORT_GRACE_S, sleep):
        return True
    on_escalate("SIGKILL")
    _signal_all(family(proc) or members, signal.SIGKILL)
    return await _exited(proc, KILL_GRACE_S, sleep)


def not_found(pid: Any) -> str:
    return (
        f"engine PID {pid} not found: it has exited, or the sidecar does not share the engine's "
        "PID namespace (compose: both services have pid: service:pidns)"
    )


def write_evidence(state_dir: str, record: HealRecord, evidence: dict[str, Any]) -> str | None:
    """The evidence file for ``record`` (None when STATE_DIR cannot be written)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(record.at))
    name = f"{HEALS_DIR}/{stamp}-{record.start_id}.json"
    document = {**evidence, "heal": {k: v for k, v in record.to_json().items() if k != "evidence"}}
    try:
        write_document(state_dir, name, document)
    except StateUnwritableError:
        return None
    with contextlib.suppress(OSError):  # keep as many evidence files as heal records
        for old in sorted((Path(state_dir) / HEALS_DIR).glob("*.json"))[:-KEEP]:
            old.unlink(missing_ok=True)
    return str(Path(state_dir) / name)


def latest_evidence(state_dir: str) -> dict[str, Any] | None:
    """The newest evidence file, for /status after a sidecar restart."""
    folder = Path(state_dir) / HEALS_DIR
    try:
        newest = max(folder.glob("*.json"), default=None)
    except OSError:
        return None
    found = read_document(folder, newest.name) if newest is not None else None
    return found if isinstance(found, dict) else None


Evidence = Callable[[], dict[str, Any]]


class Healer:
    """Ends a hung engine at most once per start, with a back-off between heals;
    each heal is kept in ``heals.json`` (and its evidence under ``heals/``) so a
    restarted sidecar keeps the back-off and shows the last heal."""

    def __init__(
        self, enabled: bool, backoff_s: float, state_dir: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.enabled, self.backoff_s, self.state_dir, self.clock = enabled, backoff_s, state_dir, clock
        self.history = records(read_document(state_dir, HEALS_FILE))
        self.last_evidence = latest_evidence(state_dir) if self.history else None
        self.total = 0  # heals by this sidecar process (the counter)
        self.blocked: str | None = None  # why a hung engine was not ended
        self.task: asyncio.Task[None] | None = None

    def _save(self, record: HealRecord) -> None:
        self.history = [*(r for r in self.history if r.at != record.at), record][-KEEP:]
        with contextlib.suppress(StateUnwritableError):  # read-only STATE_DIR: kept in memory only
            write_document(self.state_dir, HEALS_FILE, [r.to_json() for r in self.history])

    def consider(
        self,
        state: dict[str, Any] | None,
        hung: str | None,
        was_ready: bool,
        evidence: Evidence = dict,
    ) -> None:
        """Heal when ``hung`` names why the engine of ``state``'s start is hung;
        ``evidence`` gives what the monitor saw, recorded before any signal."""
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
        elif (proc := find_engine(pid, state.get("pid_start_ticks"), state.get("argv"))) is None:
            self.blocked = not_found(pid)
        else:
            record = HealRecord(self.clock(), str(start_id), proc.pid, hung, was_ready, "SIGTERM")
            self._begin(proc, record, float(state.get("shutdown_timeout") or 0), evidence)

    def _begin(self, proc: psutil.Process, record: HealRecord, drain_s: float, evidence: Evidence) -> None:
        found = {**evidence(), "processes": processes(proc), "stacks": STACKS}
        children = family(proc)[:-1]
        try:
            proc.send_signal(0)  # permitted at all? (the children get the same answer)
        except psutil.NoSuchProcess:
            self.blocked = not_found(record.pid)
            return
        except psutil.AccessDenied:
            self.blocked = (
                f"not permitted to signal engine PID {record.pid}: run the sidecar as the engine's user"
            )
            return
        record = replace(record, evidence=write_evidence(self.state_dir, record, found))
        self.last_evidence = {**found, "heal": record.to_json()}
        _signal_all(children, signal.SIGABRT)  # their stacks to the log, then they end
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
        self.total += 1
        self._save(record)
        self.task = asyncio.create_task(self._finish(proc, record, drain_s))

    async def _finish(self, proc: psutil.Process, record: HealRecord, drain_s: float) -> None:
        current = [record]

        def escalate(name: str) -> None:
            current[0] = replace(current[0], signal=name)
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
            "last_evidence": self.last_evidence,
        }
