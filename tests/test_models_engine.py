"""MODELS through the real CPU engine: two tiny checkpoints of different formats, an
engine each, behind vLLM's router on one port (routing by the request's model)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from entrypoint.plan.stack import MAX_MODELS
from tests.conftest import clean_env, run_cli
from tests.support.engine import (
    ONE_PROCESS_ENGINE,
    ONE_PROCESS_ENGINE_ENV,
    Engine,
    free_port,
    free_ports,
    http_json,
    spawn_launch,
    stop,
)
from tests.support.sidecar import get, sidecar, status, until
from tests.test_engine import assert_kv_capacity_matches_the_plan, chat

pytestmark = pytest.mark.engine

SERVED = {"plain": "bf16", "fp4": "ct-nvfp4"}  # served name → checkpoint format


class Stack:
    def __init__(self, proc: Any, url: str, log: Path, state: Path, ops: str) -> None:
        self.proc, self.url, self.log, self.state, self.ops = proc, url, log, state, ops
        self.doc = json.loads((state / "stack.json").read_text())

    def engine_state(self, name: str) -> dict[str, Any]:
        (entry,) = [e for e in self.doc["engines"] if e["name"] == name]
        return json.loads((Path(entry["state_dir"]) / "launcher.json").read_text())

    def engine(self, name: str) -> Engine:
        return Engine(self.proc, f"http://127.0.0.1:{self.engine_state(name)['port']}", self.log)


def _routed(url: str, name: str) -> bool:
    try:
        return http_json(f"{url}/v1/chat/completions", _body(name), timeout=30)["model"] == name
    except (urllib.error.URLError, OSError, KeyError):
        return False


def _body(name: str) -> dict[str, Any]:
    return {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}


def wait_routed(stack: Stack, names: list[str], within: float = 300) -> None:
    deadline = time.monotonic() + within
    while not all(_routed(stack.url, n) for n in names):
        assert stack.proc.poll() is None, stack.log.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, stack.log.read_text(errors="replace")[-4000:]
        time.sleep(1)


@pytest.fixture(scope="module")
def stack(
    checkpoint_factory: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("models")
    models = [
        {"model": str(checkpoint_factory(fmt)), "settings": {"served_model_name": name, "max_model_len": 512}}
        for name, fmt in SERVED.items()
    ]
    (home / "stack.yaml").write_text(json.dumps({"models": models}))
    port = free_port()
    env = clean_env(
        MODELS=str(home / "stack.yaml"),
        STATE_DIR=str(home / "state"),
        HOST="127.0.0.1",
        PORT=str(port),
        ENGINE_PORT=str(free_ports(MAX_MODELS + 1)),  # the engines, then the router's metrics
        # STAND-IN for time (tests/support/engine.py): each engine's core in its API server's
        # process. What an API server killed alone leaves in its group is tests/launch/test_stack.py's.
        ENGINE_COMMAND=ONE_PROCESS_ENGINE,
        RESTART_BACKOFF_S="1",
        SHUTDOWN_TIMEOUT="0",
        SIDECAR_PORT=str(free_port()),
        VLLM_URL=f"http://127.0.0.1:{port}",
        READY_POLL_INTERVAL="0.5",
        PROBE_INTERVAL="5",
        PROBE_TIMEOUT="3",
        HEAL_AFTER="2",
        ROUTER_COMMAND=str(Path(sys.executable).parent / "vllm-router"),
        **ONE_PROCESS_ENGINE_ENV,
    )
    with sidecar(env, home / "sidecar.log") as ops:
        proc = spawn_launch(env, home / "launch.log")
        deadline = time.monotonic() + 60
        while not (home / "state" / "stack.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (home / "launch.log").read_text()
            time.sleep(0.2)
        running = Stack(proc, f"http://127.0.0.1:{port}", home / "launch.log", home / "state", ops)
        try:
            wait_routed(running, list(SERVED))
            until(lambda: get(ops + "/health/ready")[0] == 200, 120, "the sidecar: every model ready")
            yield running
        finally:
            stop(proc, grace=90)


def test_each_model_answers_by_name_plain_and_streamed_and_both_are_listed(stack: Stack) -> None:
    router = Engine(stack.proc, stack.url, stack.log)
    for name in SERVED:
        assert chat(router, name, {})  # the reply names the model (asserted in chat)
        assert chat(router, name, {}, stream=True)
    listed = http_json(stack.url + "/v1/models")
    assert sorted(listed["models"]) == sorted(SERVED)  # the router's listing
    for name in SERVED:  # each engine serves its own model only
        assert [m["id"] for m in http_json(stack.engine(name).url + "/v1/models")["data"]] == [name]


def test_the_router_keeps_vllms_own_request_fields(stack: Stack) -> None:
    # The router decodes and re-encodes each request: a field only vLLM knows still arrives.
    body = {"model": "plain", "prompt": "The light of the sun", "max_tokens": 2, "prompt_logprobs": 1}
    (choice,) = http_json(stack.url + "/v1/completions", body)["choices"]
    assert len(choice["prompt_logprobs"]) > 1  # one per prompt token (the first is null)


def test_each_engine_holds_the_joint_plans_kv_share(stack: Stack) -> None:
    joint = stack.doc["joint"]
    assert joint["fits"] and [m["name"] for m in joint["models"]] == list(SERVED)
    for planned in joint["models"]:
        state = stack.engine_state(planned["name"])
        assert state["memory"]["kv_cache_bytes"] == planned["kv_cache_bytes"]
        logs = sorted((stack.state / "models").glob(f"*/starts/{state['start_id']}.log"))
        assert len(logs) == 1, logs
        assert_kv_capacity_matches_the_plan(state, logs[0].read_text())


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None


def _counter(engine: Engine, series: str, name: str) -> float:
    with urllib.request.urlopen(engine.url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    pattern = rf'^{re.escape(series)}\{{[^}}]*model_name="{re.escape(name)}"[^}}]*\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def _counts(engines: dict[str, Engine]) -> dict[str, tuple[float, float]]:
    """Per model: (requests finished, tokens generated)."""
    return {
        name: (
            _counter(e, "vllm:request_success_total", name),
            _counter(e, "vllm:generation_tokens_total", name),
        )
        for name, e in engines.items()
    }


def test_the_counters_move_only_for_the_model_addressed(stack: Stack) -> None:
    """Three requests of 20 tokens for fp4; plain meanwhile sees only the sidecar's idle
    probes, of one token each."""
    engines = {name: stack.engine(name) for name in SERVED}
    before = _counts(engines)
    for _ in range(3):
        body = {**_body("fp4"), "max_tokens": 20, "ignore_eos": True}
        assert http_json(f"{stack.url}/v1/chat/completions", body)["usage"]["completion_tokens"] == 20
    after = _counts(engines)
    fp4 = [a - b for a, b in zip(after["fp4"], before["fp4"], strict=True)]
    plain = [a - b for a, b in zip(after["plain"], before["plain"], strict=True)]
    assert fp4[0] >= 3 and fp4[1] >= 60
    assert plain[1] == plain[0] <= 2  # a probe or two (PROBE_INTERVAL 5), one token each


def test_bench_benchmarks_one_model_of_the_set_through_the_router(stack: Stack, tmp_path: Path) -> None:
    engines = {name: stack.engine(name) for name in SERVED}
    before = _counts(engines)
    out = tmp_path / "bench"
    argv = ["bench", "--url", stack.url, "--sidecar-url", stack.ops, "--model", "fp4", "--out", str(out),
            "--pp", "16", "--tg", "8", "--depth", "0", "--concurrency", "1", "--runs", "1",
            "--", "--skip-coherence"]  # fmt: skip
    result = run_cli(argv, clean_env(HOME=str(tmp_path / "home"), STATE_DIR=str(stack.state)), timeout=600)
    assert result.code == 0, result.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["served_model_name"] == "fp4" and doc["rows"] and doc["notes"] == []  # the sidecar answered
    after = _counts(engines)
    assert after["fp4"][1] - before["fp4"][1] >= 8  # the benchmark's tokens, on fp4's engine
    assert after["plain"][1] - before["plain"][1] <= 3  # plain saw the sidecar's idle probes only


def test_the_sidecar_is_ready_for_every_model_and_shows_each(stack: Stack) -> None:
    doc = status(stack.ops)
    assert doc["ready"] and sorted(doc["models"]) == sorted(SERVED)
    for name, model in doc["models"].items():
        assert model["ready"] and model["served_model_name"] == name
        assert model["checks"]["warmup"]["last"]["ok"] is True  # each engine warmed up on its own
    page = get(stack.ops + "/metrics")[1].decode()
    families = list(text_string_to_metric_families(page))
    assert len({f.name for f in families}) == len(families)  # each family once
    for family in families:
        for sample in family.samples:
            if not family.name.startswith("sparkserve_gpu"):  # the GPU's series are the device's
                assert sample.labels.get("model_name") in SERVED, sample
    ready = {
        s.labels["model_name"]: s.value for f in families for s in f.samples if s.name == "sparkserve_ready"
    }
    assert ready == {"plain": 1.0, "fp4": 1.0}


def test_a_hung_engine_is_healed_while_the_other_serves_and_comes_back(stack: Stack) -> None:
    state = stack.engine_state("plain")
    os.kill(state["pid"], signal.SIGSTOP)  # hung: its /health and probes get no answer
    served = 0
    deadline = time.monotonic() + 120
    while psutil.pid_exists(state["pid"]) and psutil.Process(state["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert http_json(f"{stack.url}/v1/chat/completions", _body("fp4"))["model"] == "fp4"
        served += 1
        assert time.monotonic() < deadline, "the sidecar did not end the hung engine"
        time.sleep(1)
    assert served >= 3  # the other model answered while the hung one was being healed
    wait_routed(stack, ["plain"], within=240)
    doc = status(stack.ops)
    (heal,) = doc["models"]["plain"]["checks"]["heal"]["recent"]
    assert heal["pid"] == state["pid"] and heal["was_ready"] is True
    assert doc["models"]["fp4"]["checks"]["heal"]["total"] == 0  # the other was never touched
    assert stack.engine_state("plain")["start_id"] != state["start_id"]  # a new start
    left = [p for p in psutil.process_iter() if _group(p) == state["pid"]]
    assert not left, left  # nothing of the ended engine's family lives on
    text = stack.log.read_text(errors="replace")
    assert "engine plain ended (-9); starting it again" in text and "engine fp4 ended" not in text
    until(lambda: get(stack.ops + "/health/ready")[0] == 200, 120, "every model ready again")


def test_sigterm_drains_every_engine_and_the_router(stack: Stack) -> None:
    pids = [stack.engine_state(n)["pid"] for n in SERVED]
    family = [psutil.Process(p) for p in pids] + psutil.Process(stack.proc.pid).children()
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(120) == 0
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, alive
