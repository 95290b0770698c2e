"""The restart back-off through the real CLI, in real processes: an engine that
exits at once (``false``) is started, delayed, then halted; ``spark-serve
reset`` wakes the halted launcher; SIGTERM ends it; other arguments start afresh."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from entrypoint.errors import ExitCode
from tests.conftest import clean_env, run_cli
from tests.support.configs import seed_config, write_checkpoint


def launch(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "entrypoint", "launch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def state(env: dict[str, str]) -> dict[str, Any]:
    try:
        return dict(json.loads((Path(env["STATE_DIR"]) / "launcher.json").read_text()))
    except (OSError, ValueError):
        return {}


def wait_for_phase(env: dict[str, str], phase: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = state(env)
        if current.get("phase") == phase:
            return current
        assert proc.poll() is None, f"launcher ended early: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError(f"no phase {phase}: {state(env)}")


def test_quick_failures_back_off_then_halt_until_reset(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt", seed_config("llama"))
    env = clean_env(
        MODEL=str(ckpt),
        STATE_DIR=str(tmp_path / "state"),
        ENGINE_COMMAND="false {model}",
        MAX_MODEL_LEN="512",
        RESTART_LIMIT="2",
        RESTART_BACKOFF_S="0.2",
    )
    code, err = finish(launch(env))
    assert code == 1 and "failed before ready" not in err  # `false` ran: the engine's own exit

    code, err = finish(launch(env))
    assert code == 1 and "1 engine start in a row failed before ready; waiting 0.2s" in err

    halted = launch(env)
    current = wait_for_phase(env, "halted", halted)
    assert "2 engine starts in a row failed before ready" in current["waiting"]["reason"]
    time.sleep(1.0)
    assert halted.poll() is None, "a halted launcher stays up instead of exiting into a restart"
    history = json.loads((tmp_path / "state" / "starts.json").read_text())
    assert len(history) == 2
    done = run_cli(["reset"], env)
    assert done.code == ExitCode.OK and "forgot 2 engine starts" in done.stdout
    code, err = finish(halted)
    assert code == 1 and "reset: starting again" in err

    code, err = finish(launch(env))  # one failed start since the reset
    assert code == 1 and "waiting 0.2s" in err
    stopped = launch(env)
    wait_for_phase(env, "halted", stopped)
    stopped.send_signal(signal.SIGTERM)
    code, err = finish(stopped, timeout=10)
    assert code == 0 and "stopped before the engine started" in err
    assert "stopped by a signal" in state(env)["error"]

    code, err = finish(launch({**env, "MAX_MODEL_LEN": "256"}))  # other arguments: no back-off
    assert code == 1 and "failed before ready" not in err and "halted" not in err
