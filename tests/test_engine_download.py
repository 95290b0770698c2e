"""End to end: fresh cache + local Hub → `spark-serve launch` downloads a tiny
NVFP4 checkpoint and the real engine serves it; the next launch fetches no weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.downloads import hub_env
from tests.support.engine import ONE_PROCESS_ENGINE, ONE_PROCESS_ENGINE_ENV, free_port, http_json, launched
from tests.support.hub import Hub

pytestmark = pytest.mark.engine
REPO_ID = "DrQianXu/Qwen3-4B-nvfp4-Compressible"  # the default profile's repo, served locally


def ask(url: str) -> str:
    body = {"model": "qwen3-4b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    reply = http_json(url + "/v1/chat/completions", body)
    return str(reply["choices"][0]["finish_reason"])


def test_first_launch_downloads_and_serves_second_fetches_no_weights(
    checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    with Hub() as hub:
        hub.add_dir(REPO_ID, checkpoint_factory("ct-nvfp4"))
        env = hub_env(
            hub.url,
            tmp_path,
            PORT=str(free_port()),
            HOST="127.0.0.1",
            MAX_MODEL_LEN="512",
            ENGINE_COMMAND=ONE_PROCESS_ENGINE,
            **ONE_PROCESS_ENGINE_ENV,
        )
        with launched(env, tmp_path / "first.log") as engine:
            assert ask(engine.url) in ("length", "stop")
            state = json.loads((tmp_path / "state" / "launcher.json").read_text())
            assert state["phase"] == "starting" and state["repo"] == REPO_ID
            assert state["download"]["bytes_done"] == state["download"]["bytes_total"] > 0
            assert state["model_path"].endswith(hub.repos[REPO_ID].refs["main"])
            assert "spark-serve: downloading" in engine.log_text()
        assert hub.gets["model.safetensors"] == 1
        hub.reset_counters()
        with launched(env, tmp_path / "second.log") as engine:
            assert ask(engine.url) in ("length", "stop")
            assert "spark-serve: downloading" not in engine.log_text()
        assert hub.gets["model.safetensors"] == 0
        assert not any(path.endswith(".safetensors") for method, path in hub.requests if method == "GET")
