"""The sidecar against the real engine and real Prometheus."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from entrypoint.engine.logfigures import read_figures
from entrypoint.inputs.measured import current
from entrypoint.plan.measured import with_margin
from tests.conftest import run_cli
from tests.support.engine import (
    Engine,
    free_port,
    http_json,
    spawn_launch,
    stop,
    tiny_engine_env,
    wait_healthy,
)
from tests.support.prom import prometheus, promtool, wait_for_series
from tests.support.sidecar import get, sidecar

pytestmark = pytest.mark.engine

PROBE_INTERVAL = 2.0


def answered(engine: Engine) -> tuple[float, float]:
    """(requests vLLM answered, tokens it generated) from its own /metrics."""
    with urllib.request.urlopen(engine.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    done = tokens = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:request_success_total" and sample.labels["finished_reason"] in (
                "length",
                "stop",
            ):
                done += sample.value
            elif sample.name == "vllm:generation_tokens_total":
                tokens += sample.value
    return done, tokens


def probes(url: str) -> dict[str, Any]:
    return dict(json.loads(get(url + "/status")[1])["checks"]["probe"])


@dataclass
class Stack:
    engine: Engine
    sidecar: str
    codes_while_starting: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def stack(
    checkpoint_factory: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    env = tiny_engine_env(
        tmp / "state",
        checkpoint_factory("bf16"),
        SIDECAR_PORT=str(free_port()),
        READY_POLL_INTERVAL="0.5",
        PROBE_INTERVAL=str(PROBE_INTERVAL),
        PROBE_TIMEOUT="20",
        API_KEY="k",
    )
    with sidecar(env, tmp / "sidecar.log") as url:
        codes = [get(url + "/health/ready")[0]]
        proc = spawn_launch(env, tmp / "engine.log")
        engine = Engine(proc, f"http://127.0.0.1:{env['PORT']}", tmp / "engine.log")
        deadline = time.monotonic() + 240
        while codes[-1] != 200 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            codes.append(get(url + "/health/ready")[0])
        wait_healthy(engine)
        try:
            yield Stack(engine, url, codes, dict(env))
        finally:
            stop(proc)


def test_ready_flips_from_503_to_200_as_the_engine_comes_up(stack: Stack) -> None:
    assert stack.codes_while_starting[0] == 503 and stack.codes_while_starting[-1] == 200
    status = json.loads(get(stack.sidecar + "/status")[1])
    assert status["phase"] == "serving" and status["ready"] is True
    assert status["served_model_name"] == "tiny" and status["vllm_version"] == "0.32.0"
    assert status["time_to_ready_seconds"] > 0
    assert "k" not in {status.get("api_key"), status.get("last_error")}
    assert status["memory"]["kv_cache_bytes"] > 0 and status["waiting"] is None
    # The sidecar told the launcher's restart back-off that this start reached ready.
    state_dir = stack.engine.log.parent / "state"
    launcher = json.loads((state_dir / "launcher.json").read_text())
    assert json.loads((state_dir / "ready.json").read_text())["start_id"] == launcher["start_id"]


def test_a_plan_after_the_start_uses_what_it_measured_and_shows_planned_against_measured(
    stack: Stack,
) -> None:
    """The log keeper kept vLLM's KV line, the sidecar's ready mark holds MemAvailable then,
    and the next plan of the same model takes the engine's measured footprint beyond
    weights and KV (+ margin) as its allowance, saying so."""
    state_dir = stack.engine.log.parent / "state"
    launcher = json.loads((state_dir / "launcher.json").read_text())
    calib, start_id = launcher["calibration"], launcher["start_id"]
    assert calib["available_at_start"] > 0 and calib["planned"]["kv_cache_bytes"] > 0
    assert isinstance(json.loads((state_dir / "ready.json").read_text())["available_at_ready"], int)
    kept = (state_dir / "starts" / f"{start_id}.log").read_text().splitlines()
    assert kept and all("KV cache size" in line for line in kept)  # the CPU build's one figure line
    figures = read_figures(kept)
    assert figures.kv_tokens == pytest.approx(calib["planned"]["kv_cache_tokens"], rel=0.02)
    assert "CPU KV cache size" in stack.engine.log.read_text()  # the container log still has it
    measured = current(state_dir)
    assert measured is not None and measured.non_kv_bytes is not None and measured.start_id == start_id
    done = run_cli(["plan", "--json"], stack.env)
    assert done.code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["memory"]["allowance_source"] == f"measured {measured.date} (start {start_id})"
    assert doc["memory"]["allowance_bytes"] == with_margin(measured.non_kv_bytes)
    shown = {row["figure"]: row for row in doc["measured"]["figures"]}
    assert doc["measured"]["start_id"] == start_id
    assert shown["KV cache tokens"]["measured"] == figures.kv_tokens
    assert shown["memory beyond weights and KV"]["measured"] == measured.non_kv_bytes
    text = run_cli(["plan"], stack.env).stdout
    assert f"measured: start {start_id}" in text and "KV cache tokens" in text


def test_ready_only_after_the_warmup_returned_and_vllm_counted_it(stack: Stack) -> None:
    status = json.loads(get(stack.sidecar + "/status")[1])
    warmup = status["checks"]["warmup"]["last"]
    assert warmup["ok"] and warmup["tokens"] == 16 and warmup["error"] is None
    launcher = json.loads((stack.engine.log.parent / "state" / "launcher.json").read_text())
    assert launcher["started_at"] + status["time_to_ready_seconds"] >= warmup["at"]
    # No user request yet: what vLLM answered is the warm-up and the sidecar's idle probes.
    before = probes(stack.sidecar)
    done, tokens = answered(stack.engine)
    time.sleep(0.5)
    after = probes(stack.sidecar)
    assert before["sent"] - before["failed"] <= done - 1 <= after["sent"] - after["failed"]
    assert tokens == 16 + done - 1  # 16 warm-up tokens, one per probe
    assert b'sparkserve_probe_duration_seconds_count{kind="warmup"} 1.0' in get(stack.sidecar + "/metrics")[1]


def test_idle_probes_stay_within_one_per_interval_over_a_soak(stack: Stack) -> None:
    soak = 12.0
    first, (done_first, _) = probes(stack.sidecar), answered(stack.engine)
    time.sleep(soak)
    last, (done_last, _) = probes(stack.sidecar), answered(stack.engine)
    sent = last["sent"] - first["sent"]
    assert soak / PROBE_INTERVAL - 3 <= sent <= soak / PROBE_INTERVAL + 1, sent
    assert last["failed"] == first["failed"]
    assert abs(done_last - done_first - sent) <= 1  # each probe is one answered request in vLLM


def test_metrics_pass_vllm_through_and_add_the_sidecar(stack: Stack) -> None:
    code, body = get(stack.sidecar + "/metrics")
    text = body.decode()
    assert code == 200
    assert "vllm:num_requests_running{" in text and "vllm:kv_cache_usage_perc{" in text
    assert "sparkserve_vllm_up 1.0" in text and 'sparkserve_phase{phase="serving"} 1.0' in text
    assert "sparkserve_info{" in text and 'vllm_version="0.32.0"' in text
    ours = "\n".join(line for line in text.splitlines() if "vllm:" not in line) + "\n"
    checked = subprocess.run([promtool(), "check", "metrics"], input=ours, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_real_prometheus_scrapes_the_sidecar(stack: Stack, tmp_path: Path) -> None:
    target = stack.sidecar.removeprefix("http://")
    config = (
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: spark-serve\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    with prometheus(config, tmp_path / "prom") as url:
        up = wait_for_series(url, 'sparkserve_vllm_up{job="spark-serve"} == 1')
        running = wait_for_series(url, "vllm:num_requests_running")
        assert up[0]["value"][1] == "1" and running[0]["metric"]["model_name"] == "tiny"
        assert wait_for_series(url, 'up{job="spark-serve"} == 1')


def _generate(engine: Engine, stop_at: float) -> None:
    body = {"model": "tiny", "prompt": "hello world", "max_tokens": 32}
    while time.monotonic() < stop_at:
        try:
            http_json(engine.url + "/v1/completions", body, {"authorization": "Bearer k"})
        except OSError:
            return


def test_ten_thousand_probes_and_scrapes_under_load_without_error(stack: Stack) -> None:
    generator = threading.Thread(target=_generate, args=(stack.engine, time.monotonic() + 300), daemon=True)
    generator.start()

    async def hammer() -> tuple[int, int]:
        failures, done, workers = 0, 0, 32
        paths = ["/health/ready", "/metrics"]
        # A keep-alive slot per worker and no client-side expiry: httpcore's pool closes a
        # connection it finds surplus or expired even after handing it to a waiting request
        # (encode/httpcore#1110, open), a ClosedResourceError of the client's, not the sidecar's.
        limits = httpx.Limits(max_keepalive_connections=workers, keepalive_expiry=None)
        async with httpx.AsyncClient(base_url=stack.sidecar, timeout=30, limits=limits) as client:

            async def worker(offset: int) -> None:
                nonlocal failures, done
                for i in range(offset, 10_000, workers):
                    response = await client.get(paths[i % 2])
                    done += 1
                    failures += response.status_code != 200

            await asyncio.gather(*(worker(k) for k in range(workers)))
        return done, failures

    done, failures = asyncio.run(hammer())
    assert (done, failures) == (10_000, 0)


def test_a_sidecar_beside_an_engine_it_did_not_launch_judges_the_engine_alone(
    stack: Stack, tmp_path: Path
) -> None:
    """LAUNCHER=0 (a Helm chart starts vLLM): no state file, still warm-up, readiness and status."""
    env = {
        **os.environ,
        "SIDECAR_PORT": str(free_port()),
        "VLLM_URL": stack.engine.url,
        "API_KEY": "k",
        "LAUNCHER": "0",
        "STATE_DIR": str(tmp_path / "no-launcher"),
        "READY_POLL_INTERVAL": "0.5",
    }
    with sidecar(env, tmp_path / "sidecar.log") as url:
        deadline = time.monotonic() + 120
        while get(url + "/health/ready")[0] != 200:
            assert time.monotonic() < deadline, get(url + "/status")[1][:2000]
            time.sleep(0.5)
        status = json.loads(get(url + "/status")[1])
        assert status["phase"] == "serving" and status["checks"]["warmup"]["last"]["ok"] is True
        assert "LAUNCHER=0" in status["checks"]["heal"]["blocked"]
        assert status["time_to_ready_seconds"] is not None
    assert not (tmp_path / "no-launcher" / "ready.json").exists()  # no launcher's back-off to reset


def test_killed_engine_turns_ready_off_within_five_seconds(stack: Stack) -> None:
    os.killpg(stack.engine.proc.pid, signal.SIGKILL)
    stack.engine.proc.wait()
    start = time.monotonic()
    while get(stack.sidecar + "/health/ready")[0] != 503:
        assert time.monotonic() - start < 5, "still ready 5 s after the engine died"
        time.sleep(0.1)
    assert get(stack.sidecar + "/health/live")[0] == 200
    code, body = get(stack.sidecar + "/metrics")
    assert code == 200 and b"sparkserve_vllm_up 0.0" in body
    reason = json.loads(get(stack.sidecar + "/health/ready")[1])["reason"]
    assert "vLLM /health is not 200" in reason
