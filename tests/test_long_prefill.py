"""A long prefill is not a hang, with the real engine: one long prompt, prefilled in
small chunks, freezes every counter the sidecar reads for longer than
``READY_PROGRESS_WINDOW``; the sidecar asks with one-token confirmations (the
planned ``--long-prefill-token-threshold`` lets them through the prefill), heals
nothing, and the request completes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine import free_port, spawn_launch, stop, tiny_engine_env
from tests.support.sidecar import get, sidecar, status, until

pytestmark = pytest.mark.engine

PROMPT_TOKENS = 3800  # of the tiny model's 4096 positions
CHUNK = 2  # MAX_NUM_BATCHED_TOKENS: the prefill takes PROMPT_TOKENS / CHUNK engine steps


def _long_completion(url: str, result: dict[str, Any]) -> None:
    body = {"model": "tiny", "prompt": [5] * PROMPT_TOKENS, "max_tokens": 4, "ignore_eos": True}
    request = urllib.request.Request(
        url + "/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as response:
        result["body"] = json.loads(response.read())
    result["seconds"] = time.monotonic() - start


def test_a_long_prefill_is_confirmed_never_healed_and_completes(
    checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    env = tiny_engine_env(
        state_dir,
        checkpoint_factory("bf16"),
        MAX_MODEL_LEN="4096",
        MAX_NUM_BATCHED_TOKENS=str(CHUNK),
        MAX_NUM_SEQS="2",
        SIDECAR_PORT=str(free_port()),
        READY_POLL_INTERVAL="0.2",
        READY_PROGRESS_WINDOW="1",
        PROBE_INTERVAL="600",
        PROBE_TIMEOUT="5",
        HEAL_AFTER="1",
    )
    with sidecar(env, tmp_path / "sidecar.log") as url:
        proc = spawn_launch(env, tmp_path / "engine.log")
        try:
            until(lambda: get(url + "/health/ready")[0] == 200, 240, "ready")
            launcher = json.loads((state_dir / "launcher.json").read_text())
            assert "--long-prefill-token-threshold" in launcher["argv"]
            result: dict[str, Any] = {}
            engine = f"http://127.0.0.1:{env['PORT']}"
            client = threading.Thread(target=_long_completion, args=(engine, result))
            client.start()
            stalls: list[dict[str, Any]] = []
            while client.is_alive():
                stall = status(url)["checks"]["stall"]
                if stall is not None:
                    stalls.append(stall)
                time.sleep(0.1)
            client.join()
            after = status(url)
            alive = proc.poll() is None
        finally:
            stop(proc)
        engine_log = (tmp_path / "engine.log").read_text(errors="replace")
    assert result["body"]["usage"]["prompt_tokens"] == PROMPT_TOKENS, engine_log[-2000:]
    assert result["body"]["choices"][0]["finish_reason"] == "length"
    # The prefill outlasted the window: the sidecar saw the counters freeze and asked
    # (a confirmation is sent only then), and every confirmation answered through the prefill.
    confirm = after["checks"]["confirm"]
    assert confirm["sent"] >= 1 and confirm["failed"] == 0, (result["seconds"], confirm)
    assert stalls and max(s["for_s"] for s in stalls) > 1.0, stalls[:3]  # what /status showed
    assert all(s["running"] >= 1 for s in stalls), stalls
    assert after["checks"]["heal"]["total"] == 0 and after["checks"]["hung"] is None
    assert after["ready"] is True
    assert not (state_dir / "heals.json").exists()
    assert alive  # the engine that prefilled is the one still serving
