"""Healing with the real engine: SIGSTOP makes vLLM hang (its port accepts,
nothing answers); the sidecar ends it, and never before it was up."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.engine import free_port, spawn_launch, stop, tiny_engine_env
from tests.support.sidecar import get, sidecar, status, until

pytestmark = pytest.mark.engine


def test_a_stopped_engine_is_ended_but_never_before_it_was_up(
    checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    env = tiny_engine_env(
        state_dir,
        checkpoint_factory("bf16"),
        SHUTDOWN_TIMEOUT="0",
        SIDECAR_PORT=str(free_port()),
        READY_POLL_INTERVAL="0.5",
        PROBE_INTERVAL="1",
        PROBE_TIMEOUT="3",
        HEAL_AFTER="2",
    )
    with sidecar(env, tmp_path / "sidecar.log") as url:
        proc = spawn_launch(env, tmp_path / "engine.log")
        try:
            # Stopped while it loads: as hung as can be, but never up, so never healed.
            until(lambda: status(url)["phase"] == "starting", 120, "the launcher execs the engine")
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(10)  # > HEAL_AFTER × (PROBE_INTERVAL + PROBE_TIMEOUT)
            early = status(url)
            assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
            os.kill(proc.pid, signal.SIGCONT)
            assert early["checks"]["heal"]["total"] == 0 and early["checks"]["hung"] is None
            assert early["checks"]["probe"]["sent"] == 0 and early["checks"]["warmup"]["last"] is None
            assert early["reason"].startswith("vLLM /health is not 200")

            until(lambda: get(url + "/health/ready")[0] == 200, 240, "ready")
            os.kill(proc.pid, signal.SIGSTOP)
            proc.wait(90)  # 2 probes time out, SIGTERM stays pending, SIGKILL 30 s later
            until(lambda: status(url)["checks"]["heal"]["recent"][-1]["exited"] is True, 10, "recorded")
            after = status(url)
            metrics = get(url + "/metrics")[1].decode()
            ready = get(url + "/health/ready")[0]
        finally:
            stop(proc)
    assert proc.returncode == -signal.SIGKILL
    heal = after["checks"]["heal"]
    (done,) = heal["recent"]
    launcher = json.loads((state_dir / "launcher.json").read_text())
    assert done["pid"] == proc.pid and done["start_id"] == launcher["start_id"]
    assert done["signal"] == "SIGKILL" and done["was_ready"] is True
    assert done["reason"] == "2 idle probes in a row failed (HEAL_AFTER 2); last: no answer in 3s"
    assert heal["total"] == 1 and "sparkserve_heals_total 1.0" in metrics and ready == 503
    # The evidence was written before the first signal: the reason, what the engine's
    # processes were doing, and the stacks, which its engine core wrote to the log on SIGABRT.
    evidence = json.loads(Path(done["evidence"]).read_text())
    assert evidence["reason"] == done["reason"] and evidence["heal"]["signal"] == "SIGTERM"
    by_pid = {p["pid"]: p for p in evidence["processes"]}
    assert by_pid[proc.pid]["status"] == "stopped" and len(by_pid) >= 2  # the API server and its core
    assert evidence["checks"]["probe"]["failures_in_row"] == 2 and "gpu" in evidence
    assert heal["last_evidence"]["heal"]["evidence"] == done["evidence"]
    log = (tmp_path / "engine.log").read_text(errors="replace")
    assert "Fatal Python error: Aborted" in log and "most recent call first" in log
