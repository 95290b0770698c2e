from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from entrypoint.errors import EngineNotFoundError, ModelUnavailableError
from entrypoint.inputs.gather import Reading, chained
from entrypoint.launch.run import engine_facts, launch, planned_or_recorded
from entrypoint.plan.chain import Chained
from entrypoint.plan.command import shown_argv
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import Plan, resolve
from tests.conftest import PROFILES
from tests.support.configs import seed_config, write_checkpoint


def offline_chain(plan: Plan) -> Chained:
    """The rest of the chain for a plan resolved here, from local files only."""
    return chained(plan, Reading(offline=True, retries=0))


class Exec:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []

    def __call__(self, file: str, argv: list[str], env: dict[str, str]) -> Any:
        self.calls.append((file, argv, env))


def test_launch_writes_starting_state_then_execs_the_argv(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt", seed_config("llama"))
    env = {
        "MODEL": str(ckpt),
        "STATE_DIR": str(tmp_path / "state"),
        "API_KEY": "k3y",
        "ENGINE_COMMAND": "true {model}",
        "PATH": "/usr/bin:/bin",
    }
    fake = Exec()
    with pytest.raises(SystemExit):
        launch(offline_chain(resolve(Catalog([PROFILES]), env, {})), env, execvpe=fake)
    file, argv, engine_env = fake.calls[0]
    assert file == "true" and argv[1] == str(ckpt) and engine_env["VLLM_API_KEY"] == "k3y"
    state = json.loads((tmp_path / "state" / "launcher.json").read_text())
    assert state["phase"] == "starting" and state["argv"] == argv and state["quantization"] == "none"
    assert "k3y" not in (tmp_path / "state" / "launcher.json").read_text()
    # The sidecar's handle on the engine: exec keeps this PID and its start time.
    assert state["pid"] == os.getpid() and state["pid_started_at"] == psutil.Process().create_time()
    assert state["shutdown_timeout"] == 0 and state["speculative_tokens"] == 0  # no profile: vLLM defaults


def test_engine_facts_carry_the_drain_and_the_draft_tokens() -> None:
    plan = resolve(Catalog([PROFILES]), {"MODEL": "axe-strada-28b-nvfp4a16", "VARIANT": "mtp"}, {})
    seqs = plan.value("max_num_seqs")
    assert engine_facts(plan) == {"shutdown_timeout": 30, "speculative_tokens": 3, "max_num_seqs": seqs}
    plan = resolve(Catalog([PROFILES]), {"MODEL": "axe-strada-28b-nvfp4a16", "SHUTDOWN_TIMEOUT": "5"}, {})
    assert engine_facts(plan) == {"shutdown_timeout": 5, "speculative_tokens": 0, "max_num_seqs": seqs}


def test_missing_local_model_fails_before_exec_and_records_it(tmp_path: Path) -> None:
    env = {"MODEL": str(tmp_path / "absent"), "STATE_DIR": str(tmp_path / "state")}
    fake = Exec()
    with pytest.raises(ModelUnavailableError):
        launch(planned_or_recorded(env, {}), env, execvpe=fake)
    assert fake.calls == []
    state = json.loads((tmp_path / "state" / "launcher.json").read_text())
    assert state["phase"] == "failed" and "does not exist" in state["error"]


def test_missing_engine_binary_is_a_typed_error(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt", seed_config("llama"))
    env = {"MODEL": str(ckpt), "STATE_DIR": str(tmp_path / "s"), "ENGINE_COMMAND": "no-such-engine {model}"}
    with pytest.raises(EngineNotFoundError, match="ENGINE_COMMAND"):
        launch(offline_chain(resolve(Catalog([PROFILES]), env, {})), env, execvpe=Exec())


def test_secret_flags_are_redacted_in_shown_argv() -> None:
    assert shown_argv(["vllm", "--api-key", "x", "--api-key=y", "--port", "1"]) == [
        "vllm",
        "--api-key",
        "<redacted>",
        "--api-key=<redacted>",
        "--port",
        "1",
    ]
