"""The last step before exec: restart back-off, the memory guard, and the halt.

The decisions are pure (:mod:`entrypoint.plan.restarts`); this module waits,
reports each wait in the state file and the log, and never exits into another
restart: a launcher that gives up halts, stays up, and resumes on
``spark-serve reset`` (or ends on SIGTERM/SIGINT, whose handlers only set a
flag). Every dependency (the meminfo path, the NVML loader, the clock, the poll
interval) is a field of :class:`Runtime`, so tests pass stand-ins.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ..inputs.device import MEMINFO, load_nvml, nvml_facts, read_meminfo
from ..plan.hardware import GB
from ..plan.memory import MemoryPlan
from ..plan.restarts import BackoffDecision
from ..state import RESET_FILE, read_document

Report = Callable[..., None]
LOG_EVERY_S = 30.0


class Stopped(Exception):
    """SIGTERM or SIGINT arrived while the launcher waited."""


class Halted(Exception):
    """The launcher must not start the engine until it is reset."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


@dataclass
class Runtime:
    meminfo: Path = MEMINFO
    nvml: Callable[[], Any] = load_nvml
    poll_s: float = 5.0
    clock: Callable[[], float] = time.time
    stop: threading.Event = field(default_factory=threading.Event)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT set :attr:`stop` while the launcher waits (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(max(seconds, 0.0)):
            raise Stopped


def say(line: str) -> None:
    print(f"spark-serve: {line}", file=sys.stderr, flush=True)


def gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def memory_now(kind: str, runtime: Runtime) -> tuple[int | None, list[dict[str, Any]]]:
    """(available bytes, GPU processes NVML lists) right now; None where unknown.

    Unified memory and the host: MemAvailable, as vLLM reads it on an integrated
    GPU. Dedicated memory: NVML's free memory.
    """
    facts = nvml_facts(runtime.nvml)
    processes = [{"pid": pid, "bytes": used} for pid, used in (facts.processes if facts else [])]
    if kind == "dedicated":
        return (facts.memory_free if facts else None), processes
    return read_meminfo(runtime.meminfo).get("MemAvailable"), processes


def back_off(decision: BackoffDecision, runtime: Runtime, report: Report) -> None:
    if decision.halt:
        raise Halted(
            decision.reason(),
            "read the engine's log above for why it failed, fix that, then run 'spark-serve reset' "
            "(docker compose exec vllm spark-serve reset)",
        )
    if decision.delay_s <= 0:
        return
    until = runtime.clock() + decision.delay_s
    report(
        "backing-off",
        waiting={"for": "restart back-off", "reason": decision.reason(), "until": until},
    )
    say(decision.reason())
    runtime.sleep(decision.delay_s)


def wait_for_memory(
    need: int, memory: MemoryPlan, wait_s: float, runtime: Runtime, report: Report
) -> int | None:
    """The bytes available once ``need`` bytes are (None where that cannot be read);
    halt after ``wait_s`` seconds. ``wait_s`` 0 turns the guard off: one reading."""
    started = runtime.clock()
    logged = -LOG_EVERY_S
    while True:
        available, processes = memory_now(memory.memory_kind, runtime)
        if wait_s <= 0 or available is None or available >= need:
            if available is None and wait_s > 0:
                say("available memory cannot be read; starting without the memory guard")
            return available
        now = runtime.clock()
        held = ", ".join(
            f"pid {p['pid']}" + (f" ({gb(p['bytes'])})" if p["bytes"] else "") for p in processes
        )
        reason = f"needs {gb(need)} available, {gb(available)} is" + (
            f"; GPU processes: {held}" if held else ""
        )
        report(
            "waiting-for-memory",
            waiting={
                "for": "memory",
                "reason": reason,
                "need_bytes": need,
                "available_bytes": available,
                "processes": processes,
                "since": started,
                "until": started + wait_s,
            },
        )
        if now - started >= wait_s:
            raise Halted(
                f"memory: {reason}, after waiting {wait_s:g}s",
                "stop what holds the memory (another engine, a crashed container: docker ps), "
                "then run 'spark-serve reset'; raise MEMORY_WAIT_S to wait longer",
            )
        if now - logged >= LOG_EVERY_S:
            say(f"waiting for memory: {reason}")
            logged = now
        runtime.sleep(runtime.poll_s)


def wait_for_reset(halt: Halted, state_dir: str, runtime: Runtime, report: Report) -> None:
    """Stay up, starting nothing, until ``spark-serve reset`` (or a signal)."""
    since = runtime.clock()
    report("halted", error=halt.reason, waiting={"for": "reset", "reason": halt.reason, "fix": halt.fix})
    say(f"halted: {halt.reason}; {halt.fix}")
    while True:
        runtime.sleep(runtime.poll_s)
        reset = read_document(state_dir, RESET_FILE)
        if isinstance(reset, dict) and float(reset.get("at", 0)) >= since:
            say("reset: starting again")
            return
