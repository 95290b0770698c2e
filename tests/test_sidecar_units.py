"""Sidecar pieces without an engine: readiness rules, NVML paths, metric output."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString

from entrypoint.errors import SettingError
from server.collectors import GpuCollector, SidecarCollector
from server.gpu import GpuSampler, Nvml, system_memory
from server.monitor import EngineCounters, Monitor, engine_counters
from server.readiness import EngineView, decide
from server.settings import load_settings
from tests.support.nvml import FakeNvml
from tests.support.prom import promtool

UP = EngineView(True, ("m",))
SERVING = {"phase": "starting", "served_model_name": "m"}


@pytest.mark.parametrize(
    ("state", "view", "ready", "phase", "reason"),
    [
        (None, UP, False, "pending", "launcher is pending"),
        ({"phase": "downloading"}, UP, False, "downloading", "launcher is downloading"),
        ({"phase": "failed", "error": "boom; fix"}, UP, False, "failed", "boom; fix"),
        (SERVING, EngineView(False, None, "ConnectError"), False, "starting", "ConnectError"),
        (SERVING, EngineView(True, None), False, "starting", "/v1/models did not answer"),
        (SERVING, EngineView(True, ("other",)), False, "starting", "'m' is not listed"),
        (SERVING, EngineView(True, ("m",)), True, "serving", "ready"),
        (SERVING, UP, True, "serving", "ready"),
        (
            {"phase": "waiting-for-memory", "waiting": {"reason": "needs 70.0 GB available, 3.0 GB is"}},
            UP,
            False,
            "waiting-for-memory",
            "launcher is waiting-for-memory: needs 70.0 GB",
        ),
        (
            {"phase": "backing-off", "waiting": {"reason": "2 engine starts"}},
            UP,
            False,
            "backing-off",
            "2 engine",
        ),
        ({"phase": "halted", "waiting": {"reason": "memory: x"}}, UP, False, "halted", "halted: memory: x"),
    ],
)
def test_readiness_rules(
    state: dict[str, Any] | None, view: EngineView, ready: bool, phase: str, reason: str
) -> None:
    verdict = decide(state, view)
    assert (verdict.ready, verdict.phase) == (ready, phase)
    assert reason in verdict.reason


def test_engine_counters_sum_running_waiting_tokens_and_finished() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0\n'
        "# TYPE vllm:prompt_tokens counter\n"
        'vllm:prompt_tokens_total{engine="0",model_name="m"} 100.0\n'
        "# TYPE vllm:generation_tokens counter\n"
        'vllm:generation_tokens_total{engine="0",model_name="m"} 42.0\n'
        "# TYPE vllm:request_success counter\n"
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 5.0\n'
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 2.0\n'
        'vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 9.0\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5\n'
    )
    assert engine_counters(text) == EngineCounters(
        running=3.0, waiting=2.0, tokens=142.0, finished=7.0, kv_usage=0.5
    )


def scrape(nvml: Nvml) -> str:
    """The GPU series as a scrape renders them from the sampler's last readings."""
    sampler = GpuSampler(nvml, 1.0, time.time)
    asyncio.run(sampler.sample())  # NVML read off the event loop, as the sidecar does
    registry = CollectorRegistry()
    registry.register(GpuCollector(lambda: sampler.latest))
    return generate_latest(registry).decode()


def test_gb10_reports_unified_system_memory() -> None:
    text = scrape(
        Nvml(lambda: FakeNvml("NVIDIA GB10", memory_supported=False), memory=lambda: (3e10, 1.28e11))
    )
    assert 'sparkserve_gpu_memory_used_bytes{gpu="0",memory="unified",name="NVIDIA GB10"} 3e+10' in text
    assert 'sparkserve_gpu_memory_total_bytes{gpu="0",memory="unified",name="NVIDIA GB10"} 1.28e+11' in text
    assert 'sparkserve_gpu_power_watts{gpu="0",name="NVIDIA GB10"} 45.5' in text
    assert 'sparkserve_gpu_temperature_celsius{gpu="0",name="NVIDIA GB10"} 61.0' in text
    assert 'sparkserve_gpu_utilization_ratio{gpu="0",name="NVIDIA GB10"} 0.87' in text


def test_discrete_gpu_reports_its_own_memory() -> None:
    text = scrape(Nvml(lambda: FakeNvml("NVIDIA H100", memory_supported=True)))
    labels = '{gpu="0",memory="dedicated",name="NVIDIA H100"}'
    assert f"sparkserve_gpu_memory_total_bytes{labels} {floatToGoString(80 * 2**30)}" in text
    assert f"sparkserve_gpu_memory_used_bytes{labels} {floatToGoString(10 * 2**30)}" in text
    assert 'memory="unified"' not in text


@pytest.mark.parametrize("loader", [lambda: None, lambda: FakeNvml("x", True, fail_init=True)])
def test_without_nvml_or_gpu_the_gpu_series_are_absent(loader: Any) -> None:
    assert "sparkserve_gpu" not in scrape(Nvml(loader))


def test_system_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n")
    assert system_memory(meminfo) == (600 * 1024, 1000 * 1024)
    assert system_memory(tmp_path / "absent") is None


def test_waiting_for_memory_is_a_phase_with_its_figures(tmp_path: Path) -> None:
    monitor = Monitor(load_settings({"STATE_DIR": str(tmp_path)}, {}), client=None)  # type: ignore[arg-type]
    monitor.state = {"phase": "waiting-for-memory", "waiting": {"need_bytes": 7e10, "available_bytes": 3e9}}
    monitor.verdict = decide(monitor.state, UP)
    registry = CollectorRegistry()
    registry.register(SidecarCollector(monitor))
    text = generate_latest(registry).decode()
    assert 'sparkserve_phase{phase="waiting-for-memory"} 1.0' in text
    assert 'sparkserve_phase{phase="starting"} 0.0' in text
    assert "sparkserve_start_memory_needed_bytes 7e+10" in text
    assert "sparkserve_start_memory_available_bytes 3e+09" in text
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_gpu_and_sidecar_output() -> None:
    text = scrape(Nvml(lambda: FakeNvml("NVIDIA GB10", memory_supported=False), memory=lambda: (1.0, 2.0)))
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sidecar_settings_name_the_bad_variable() -> None:
    with pytest.raises(SettingError, match="SIDECAR_PORT"):
        load_settings({"SIDECAR_PORT": "eighty"}, {})
    with pytest.raises(SettingError, match="VLLM_URL"):
        load_settings({"VLLM_URL": "localhost:8000"}, {})
    with pytest.raises(SettingError, match="WARMUP: invalid switch 'maybe'") as bad:
        load_settings({"WARMUP": "maybe"}, {})
    assert bad.value.fix == "use 1 to turn it on or 0 to turn it off"
    with pytest.raises(SettingError, match="HEAL_AFTER"):
        load_settings({"HEAL_AFTER": "0"}, {})
    assert load_settings({"HEAL": "off", "WARMUP": "0"}, {}).heal is False
    settings = load_settings({"PORT": "9000", "READY_PROGRESS_WINDOW": ""}, {})
    assert settings.vllm_url == "http://127.0.0.1:9000" and settings.ready_window == 60.0


def test_port_in_use_is_one_line_with_its_exit_code(tmp_path: Path) -> None:
    import socket

    from entrypoint.errors import ExitCode
    from tests.conftest import clean_env, run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli(
            ["sidecar"], clean_env(SIDECAR_HOST="127.0.0.1", SIDECAR_PORT=port, STATE_DIR=str(tmp_path))
        )
    assert result.code == ExitCode.SIDECAR_BIND
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SIDECAR_PORT" in lines[0] and "Traceback" not in result.stderr


def test_real_gpu_through_nvml_when_one_is_present() -> None:
    """Runs on a machine with an NVIDIA GPU and driver; skipped elsewhere."""
    readings = Nvml().read()
    if not readings:
        pytest.skip("no NVIDIA GPU or NVML driver on this machine")
    text = scrape(Nvml())
    for reading in readings:
        assert reading.name and f'gpu="{reading.index}"' in text
        assert reading.memory_total_bytes and reading.memory_total_bytes > 0
    assert "sparkserve_gpu_temperature_celsius{" in text and "sparkserve_gpu_power_watts{" in text


CLUSTER_IN = {
    "phase": "joined",
    "expected": 2,
    "joined": 2,
    "error": None,
    "nodes": [
        {"ip": "10.0.0.1", "role": "head", "alive": True, "phase": "joined"},
        {"ip": "10.0.0.2", "role": "worker", "alive": True, "phase": "joined"},
    ],
}


@pytest.mark.parametrize(
    ("cluster", "ready", "reason"),
    [
        (CLUSTER_IN, True, "ready"),
        ({**CLUSTER_IN, "joined": 1}, False, "cluster: 1 of 2 nodes joined"),
        ({**CLUSTER_IN, "phase": "lost", "error": "worker 10.0.0.2 lost"}, False, "worker 10.0.0.2 lost"),
    ],
)
def test_ready_only_when_every_node_of_a_cluster_is_in(
    cluster: dict[str, Any], ready: bool, reason: str
) -> None:
    verdict = decide(SERVING, UP, cluster=cluster)
    assert verdict.ready is ready and reason in verdict.reason


def test_cluster_membership_metrics_pass_promtool(tmp_path: Path) -> None:
    monitor = Monitor(load_settings({"STATE_DIR": str(tmp_path)}, {}), client=None)  # type: ignore[arg-type]
    monitor.state, monitor.cluster = SERVING, {**CLUSTER_IN, "joined": 1, "nodes": [CLUSTER_IN["nodes"][0]]}
    text = generate_latest(_registry(monitor)).decode()
    assert 'sparkserve_cluster_nodes{state="expected"} 2.0' in text
    assert 'sparkserve_cluster_nodes{state="joined"} 1.0' in text
    assert 'sparkserve_cluster_node_up{node="10.0.0.1",role="head"} 1.0' in text
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    monitor.cluster = None
    assert "sparkserve_cluster" not in generate_latest(_registry(monitor)).decode()


def _registry(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SidecarCollector(monitor))
    return registry
