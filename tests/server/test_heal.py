"""Healing pieces on real processes: identity, the SIGTERM → SIGKILL escalation, the back-off."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import psutil

from entrypoint.state import HEALS_FILE, read_document
from server.heal import KILL_GRACE_S, Healer, HealRecord, backoff_left, end_engine, find_engine, records

# Ignores SIGTERM (a hung engine that cannot drain) and has a child, as vLLM's
# API server has its engine core.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def record(at: float, was_ready: bool, start: str = "s") -> HealRecord:
    return HealRecord(at, start, 1, "hung", was_ready, "SIGTERM", True)


def test_backoff_doubles_while_healed_starts_never_got_ready() -> None:
    assert backoff_left([], 0.0, 60) == 0
    assert backoff_left([record(100, True)], 130, 60) == 30
    never = [record(100, True), record(200, False), record(300, False), record(400, False)]
    assert backoff_left(never, 400, 60) == 240  # 60 × 2^(3-1)
    assert backoff_left([record(0, False)] * 20, 0, 60) == 1800  # capped


def test_heal_records_round_trip_and_junk_is_skipped() -> None:
    good = record(5, True).to_json()
    assert records([good, {"at": "x"}, 3, None]) == [record(5, True)]
    assert records("not a list") == []


def test_a_pid_is_the_engine_only_with_its_start_time() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(proc.pid).create_time()
        assert find_engine(proc.pid, started) is not None
        assert find_engine(proc.pid, started - 100) is None  # a reused PID
        assert find_engine(proc.pid, None) is None and find_engine("1", started) is None
        proc.kill()
        time.sleep(0.2)
        assert find_engine(proc.pid, started) is None  # a zombie is not an engine
    finally:
        proc.kill()
        proc.wait()


def test_an_engine_that_ignores_sigterm_is_killed_with_its_children() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())  # type: ignore[union-attr]
        escalated: list[float] = []
        waited: list[float] = []

        async def quick(seconds: float) -> None:  # counts the seconds, sleeps a little
            waited.append(seconds)
            await asyncio.sleep(0.02)

        target = psutil.Process(proc.pid)
        target.terminate()
        exited = asyncio.run(end_engine(target, 5.0, lambda: escalated.append(sum(waited)), quick))
        assert exited and escalated == [5.0 + KILL_GRACE_S]
        assert proc.wait(5) == -9
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    finally:
        proc.kill()
        proc.wait()


def test_the_healer_signals_once_per_start_and_keeps_its_record(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    state = {
        "phase": "starting",
        "start_id": "s1",
        "pid": proc.pid,
        "pid_started_at": psutil.Process(proc.pid).create_time(),
        "shutdown_timeout": 0,
    }

    async def scenario() -> Healer:
        healer = Healer(True, 60.0, str(tmp_path), clock=lambda: 1000.0)
        healer.consider(state, None, True)
        assert healer.total == 0 and healer.blocked is None  # not hung: nothing to do
        healer.consider({**state, "phase": "pending"}, "hung", True)
        assert healer.blocked == "the launcher has not started an engine"
        healer.consider(state, "3 idle probes in a row failed", True)
        assert healer.total == 1 and healer.busy()
        assert healer.task is not None
        await asyncio.wait_for(healer.task, 10)
        healer.consider(state, "3 idle probes in a row failed", True)
        assert healer.total == 1 and "already healed" in str(healer.blocked)
        healer.consider({**state, "start_id": "s2"}, "hung", True)
        assert healer.total == 1 and "allowed in 60s" in str(healer.blocked)
        return healer

    try:
        healer = asyncio.run(scenario())
        assert proc.wait(5) == -15
    finally:
        proc.kill()
        proc.wait()
    saved = records(read_document(tmp_path, HEALS_FILE))
    assert saved == healer.history and len(saved) == 1
    assert saved[0].signal == "SIGTERM" and saved[0].exited is True and saved[0].was_ready
    assert Healer(True, 60.0, str(tmp_path)).history == saved  # a restarted sidecar keeps the back-off


def test_heal_off_never_signals(tmp_path: Path) -> None:
    healer = Healer(False, 60.0, str(tmp_path))
    healer.consider({"phase": "starting", "start_id": "s", "pid": 1, "pid_started_at": 0}, "hung", True)
    assert healer.total == 0 and healer.blocked == "HEAL=0: the engine is left as it is"
