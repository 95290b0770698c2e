"""The MODELS launcher's pure parts and `spark-serve reset` of a set."""

from __future__ import annotations

import json
from pathlib import Path

from entrypoint.launch.stack import router_argv
from entrypoint.state import RESET_FILE, STACK_FILE, STARTS_FILE
from tests.conftest import run_cli
from tests.support.downloads import hub_env


def test_the_router_takes_host_and_port_and_its_metrics_stay_on_loopback() -> None:
    argv = router_argv({"HOST": "127.0.0.1", "PORT": "8000", "ENGINE_PORT": "8100"}, ["vllm-router"])
    assert argv[:5] == ["vllm-router", "--host", "127.0.0.1", "--port", "8000"]
    assert "--enable-igw" in argv  # routing by the request's model
    assert argv[argv.index("--prometheus-host") + 1] == "127.0.0.1"
    assert argv[argv.index("--prometheus-port") + 1] == "8108"  # after the last engine's port


def test_reset_with_a_set_forgets_every_engines_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    engines = []
    for name in ("a", "b"):
        folder = state / "models" / name
        folder.mkdir(parents=True)
        (folder / STARTS_FILE).write_text(json.dumps([{"id": "x", "at": 1.0, "argv_id": "y"}]))
        engines.append({"name": name, "port": 1, "state_dir": str(folder)})
    (state / STACK_FILE).write_text(json.dumps({"engines": engines}))
    result = run_cli(["reset"], hub_env("http://127.0.0.1:9", tmp_path))
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("a: reset ") and "forgot 1 engine start" in result.stdout
    for entry in engines:
        folder = Path(entry["state_dir"])
        assert json.loads((folder / STARTS_FILE).read_text()) == [] and (folder / RESET_FILE).exists()


def test_an_api_server_killed_alone_leaves_nothing_in_its_group() -> None:
    """As the OOM killer may end vLLM's API server alone: its engine core (here a sleeping
    child, started as vLLM starts its core) would live on holding the model's memory."""
    import subprocess
    import sys

    import psutil

    from entrypoint.launch.stack import ended

    script = (
        "import subprocess, sys, time\n"
        "core = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(core.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    core = psutil.Process(int(server.stdout.readline()))  # type: ignore[union-attr]
    server.kill()
    server.wait()
    assert core.is_running() and core.status() != psutil.STATUS_ZOMBIE  # orphaned, alive
    ended(server)
    core.wait(10)
    assert not psutil.pid_exists(core.pid) or core.status() == psutil.STATUS_ZOMBIE
