"""End to end: ``spark-serve launch`` brings up the real vLLM engine (CPU build)
on each tiny checkpoint format with its seed profile and answers OpenAI chat
completions (``test_engine_derived.py``: with no profile at all)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clean_env
from tests.support.engine import (
    ONE_PROCESS_ENGINE,
    ONE_PROCESS_ENGINE_ENV,
    Engine,
    free_port,
    http_json,
    launched,
)

pytestmark = pytest.mark.engine

# format → (extra env, served name): a seed profile serving a local checkpoint directory
SERVES: dict[str, tuple[dict[str, str], str]] = {
    "ct-nvfp4": ({"PROFILE": "qwen3-4b-nvfp4"}, "qwen3-4b"),  # W4A4, FP8 KV cache, reasoning parser
    "ct-nvfp4a16": ({"PROFILE": "axe-strada-28b-nvfp4a16"}, "axe-strada-28b"),
    "modelopt-nvfp4": ({"PROFILE": "ax-3.1-nvfp4", "SHUTDOWN_TIMEOUT": "5"}, "ax-3.1"),
}
DETECTED = {
    "ct": "quantization=compressed-tensors",
    "mo": "quantization=modelopt_fp4",
    "bf": "quantization=None",
}


def assert_kv_capacity_matches_the_plan(state: dict[str, Any], log: str) -> None:
    """vLLM got the planner's KV budget (--kv-cache-memory-bytes); the tokens it
    says that holds match the planner's kv_cache_bytes / kv_bytes_per_token.

    No hybrid (Gated DeltaNet) checkpoint here: vLLM 0.32's CPU build pages linear-
    attention state its own way (its CPU attention backend's block and a float32
    state, not the CUDA page unification the planner follows), so its KV line would
    not check what a Spark runs. tests/plan/test_vllm_arithmetic.py holds the hybrid
    cases to vLLM's own spec classes instead."""
    memory = state["memory"]
    assert "--kv-cache-memory-bytes" in state["argv"]
    assert state["argv"][state["argv"].index("--kv-cache-memory-bytes") + 1] == str(memory["kv_cache_bytes"])
    logged = re.search(r"KV cache size: ([\d,]+) tokens", log)
    assert logged, "vLLM logged no KV cache size"
    engine_tokens = int(logged.group(1).replace(",", ""))
    planned = memory["kv_cache_bytes"] / memory["kv_bytes_per_token"]
    assert abs(engine_tokens - planned) <= 0.02 * planned, (engine_tokens, planned, memory)


def chat(engine: Engine, model: str, headers: dict[str, str], stream: bool = False) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": 6,
        "stream": stream,
        "temperature": 0,
    }
    if not stream:
        reply = http_json(engine.url + "/v1/chat/completions", body, headers)
        assert reply["model"] == model and reply["usage"]["completion_tokens"] > 0
        message = reply["choices"][0]["message"]
        return str(message.get("content") or "") + str(message.get("reasoning") or "")
    request = urllib.request.Request(
        engine.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    chunks = []
    with urllib.request.urlopen(request, timeout=60) as response:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
            if line == "data: [DONE]":
                break
    assert len(chunks) >= 2 and all(c["model"] == model for c in chunks)
    return "".join(
        str(c["choices"][0]["delta"].get("content") or c["choices"][0]["delta"].get("reasoning") or "")
        for c in chunks
        if c["choices"]
    )


@pytest.mark.parametrize("fmt", list(SERVES))
def test_launch_serves_each_checkpoint_format(
    fmt: str, checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    extra, served = SERVES[fmt]
    ckpt = checkpoint_factory(fmt)
    port = free_port()
    env = clean_env(
        MODEL=str(ckpt),
        PORT=str(port),
        HOST="127.0.0.1",
        MAX_MODEL_LEN="512",
        STATE_DIR=str(tmp_path / "state"),
        ENGINE_COMMAND=ONE_PROCESS_ENGINE,
        **ONE_PROCESS_ENGINE_ENV,
        **extra,
    )
    headers: dict[str, str] = {}
    with launched(env, tmp_path / "engine.log") as engine:
        state = json.loads((tmp_path / "state" / "launcher.json").read_text())
        # exec, not a child: the launcher's PID is now vLLM's API server.
        assert state["pid"] == engine.proc.pid and state["phase"] == "starting"
        cmdline = Path(f"/proc/{engine.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"vllm.entrypoints.openai.api_server" in cmdline
        models = http_json(engine.url + "/v1/models", headers=headers)
        assert [m["id"] for m in models["data"]] == [served]
        assert chat(engine, served, headers)
        assert chat(engine, served, headers, stream=True)
        log = engine.log_text()
        assert DETECTED[fmt[:2]] in log  # vLLM detected the format itself; no --quantization flag
        assert "--quantization" not in " ".join(state["argv"])
        if fmt == "ct-nvfp4":
            assert "Using fp8 data type to store kv cache" in log
        assert_kv_capacity_matches_the_plan(state, log)
