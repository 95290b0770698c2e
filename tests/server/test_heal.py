"""Healing pieces on real processes: identity, the evidence, the SIGABRT children →
SIGTERM → SIGABRT → SIGKILL escalation with the stacks in the log, the back-off."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from entrypoint.state import HEALS_FILE, read_document, start_ticks
from server.heal import (
    ABORT_GRACE_S,
    KILL_GRACE_S,
    Healer,
    HealRecord,
    backoff_left,
    end_engine,
    find_engine,
    records,
    same_command,
)
from tests.support.procs import spawn_execd

# Ignores SIGTERM (a hung engine that cannot drain) and has a child, as vLLM's
# API server has its engine core.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    # the child's interpreter is up (its fault handler armed) before its PID is printed; its
    # stack goes to the engine's stdout, so the two dumps never interleave
    "child = subprocess.Popen([sys.executable, '-c', 'import time; print(0, flush=True); time.sleep(120)'], "
    "stdout=subprocess.PIPE, stderr=1); child.stdout.readline()\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)
# Ignores SIGABRT too (as a stopped process does until SIGKILL).
DEAF = "import signal\nsignal.signal(signal.SIGABRT, signal.SIG_IGN)\n" + STUBBORN


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


def test_a_pid_is_the_engine_only_with_its_start_ticks_and_its_command_line() -> None:
    code = "import time; print(0, flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, "--api-key", "k"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # exec'd: before that, the child's command line is pytest's
        ticks = start_ticks(proc.pid)
        argv = ["python3", "-c", code, "--api-key", "<redacted>"]
        assert isinstance(ticks, int)
        assert find_engine(proc.pid, ticks, argv) is not None  # the recorded argv is redacted
        assert find_engine(proc.pid, ticks + 1, argv) is None  # a reused PID
        assert find_engine(proc.pid, ticks, [*argv[:-1], "x"]) is None  # another command line
        assert find_engine(proc.pid, ticks, ["sleep", "60"]) is None
        assert find_engine(proc.pid, None, argv) is None and find_engine(proc.pid, ticks, None) is None
        assert find_engine("1", ticks, argv) is None
        proc.kill()
        time.sleep(0.2)
        assert find_engine(proc.pid, ticks, argv) is None  # a zombie is not an engine
    finally:
        proc.kill()
        proc.wait()


def test_pid_1_the_sidecar_and_its_ancestors_are_never_the_engine() -> None:
    me = psutil.Process()
    for proc in (me, *me.parents()):
        assert find_engine(proc.pid, start_ticks(proc.pid), proc.cmdline()) is None
    assert same_command(me.cmdline(), me.cmdline())  # what the check would otherwise accept


def test_a_plain_process_whose_pid_the_state_names_is_left_alone(tmp_path: Path) -> None:
    """What a new user can try: a state naming a `sleep` with its true PID and ticks, but
    not the command line the launcher recorded."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        state = {
            "phase": "starting",
            "start_id": "s1",
            "pid": sleeper.pid,
            "pid_start_ticks": start_ticks(sleeper.pid),
            "argv": ["vllm", "serve", "/models/x", "--port", "8000"],
            "shutdown_timeout": 0,
        }
        healer = Healer(True, 60.0, str(tmp_path))
        healer.consider(state, "3 idle probes in a row failed", True)
        assert healer.task is None and healer.total == 0
        assert healer.blocked is not None and healer.blocked.startswith(f"engine PID {sleeper.pid} not found")
        time.sleep(0.2)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def _escalate(script: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int, list]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    child = int(proc.stdout.readline())  # type: ignore[union-attr]
    escalated: list[tuple[str, float]] = []
    waited: list[float] = []

    async def quick(seconds: float) -> None:  # counts the seconds, sleeps a little
        waited.append(seconds)
        await asyncio.sleep(0.02)

    target = psutil.Process(proc.pid)
    target.terminate()
    assert asyncio.run(end_engine(target, 5.0, lambda name: escalated.append((name, sum(waited))), quick))
    return proc, child, escalated


def test_an_engine_that_ignores_sigterm_writes_its_stacks_on_sigabrt() -> None:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # what the launcher gives the engine
    proc, child, escalated = _escalate(STUBBORN, env)
    try:
        assert escalated == [("SIGABRT", 5.0 + KILL_GRACE_S)]
        assert proc.wait(5) == -6
        stderr = proc.stderr.read()  # type: ignore[union-attr]
        stdout = proc.stdout.read()  # type: ignore[union-attr]
        # Both the engine (in its sleep, line 5) and its child (line 1) wrote their stacks.
        assert stderr.count("Fatal Python error: Aborted") == 1 and 'File "<string>", line 5' in stderr
        assert stdout.count("Fatal Python error: Aborted") == 1 and 'File "<string>", line 1' in stdout
        deadline = time.monotonic() + 10  # the child's own stack dump may still be ending under load
        while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the engine's child outlived the heal"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()


def test_an_engine_deaf_to_sigabrt_is_killed_with_its_children() -> None:
    proc, child, escalated = _escalate(DEAF)
    try:
        assert escalated == [("SIGABRT", 5.0 + KILL_GRACE_S), ("SIGKILL", 5.0 + KILL_GRACE_S + ABORT_GRACE_S)]
        assert proc.wait(5) == -9
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    finally:
        proc.kill()
        proc.wait()


def test_the_healer_signals_once_per_start_and_keeps_its_record(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    proc = spawn_execd(argv)  # as the launcher records it
    state = {
        "phase": "starting",
        "start_id": "s1",
        "pid": proc.pid,
        "pid_start_ticks": start_ticks(proc.pid),
        "argv": psutil.Process(proc.pid).cmdline(),
        "shutdown_timeout": 0,
    }
    seen = {"reason": "3 idle probes in a row failed", "load": {"running": 1.0, "waiting": 0.0}}

    async def scenario() -> Healer:
        healer = Healer(True, 60.0, str(tmp_path), clock=lambda: 1000.0)
        healer.consider(state, None, True)
        assert healer.total == 0 and healer.blocked is None  # not hung: nothing to do
        healer.consider({**state, "phase": "pending"}, "hung", True)
        assert healer.blocked == "the launcher has not started an engine"
        healer.consider(state, "3 idle probes in a row failed", True, lambda: seen)
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
    # The evidence was written before the signal, and a restarted sidecar shows it again.
    assert saved[0].evidence is not None and Path(saved[0].evidence).parent == tmp_path / "heals"
    evidence = json.loads(Path(saved[0].evidence).read_text())
    assert evidence["load"] == seen["load"] and evidence["heal"]["pid"] == proc.pid
    (member,) = evidence["processes"]
    assert (
        member["pid"] == proc.pid and member["status"] in ("sleeping", "running") and member["threads"] >= 1
    )
    assert "Fatal Python error: Aborted" in evidence["stacks"]
    again = Healer(True, 60.0, str(tmp_path))
    assert again.history == saved and again.last_evidence == evidence  # keeps the back-off and the why


def test_heal_off_never_signals(tmp_path: Path) -> None:
    healer = Healer(False, 60.0, str(tmp_path))
    healer.consider({"phase": "starting", "start_id": "s", "pid": 1, "pid_started_at": 0}, "hung", True)
    assert healer.total == 0 and healer.blocked == "HEAL=0: the engine is left as it is"
