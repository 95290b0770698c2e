"""``spark-serve doctor``: the real CLI against the local Hub on this machine (no
GPU), and its judgement of a GB10's facts (NVML stand-in: no GB10 here)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from entrypoint.doctor.gather import gather
from entrypoint.doctor.judge import DROP_CACHES, Line, judge
from entrypoint.errors import ExitCode
from entrypoint.inputs.gather import planned
from entrypoint.state import write_state
from tests.conftest import run_cli
from tests.support.downloads import hub_env
from tests.support.engine import free_port
from tests.support.hub import Hub
from tests.support.nvml import FakeNvml
from tests.support.procs import spawn_execd
from tests.test_memory_cli import safetensors, wide_llama

REPO_ID = "test/small"
SECTIONS = {"gpu", "hardware", "memory", "profile", "memory plan", "disk", "hub", "vllm"}
SECTIONS |= {"flashinfer-python", "torch", "cache", "port"}


def small_model_hub() -> Hub:
    from tests.support.configs import seed_config

    hub = Hub()
    files = {
        "config.json": json.dumps(seed_config("llama")).encode(),
        "model.safetensors": safetensors({"model.layers.0.mlp.down_proj.weight": 200_000}),
    }
    hub.add_repo(REPO_ID, files)
    hub.add_repo("test/wide", {"config.json": wide_llama(), "model.safetensors": files["model.safetensors"]})
    hub.tokens["hf_good"] = "alice"
    return hub


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    result = run_cli(["doctor", "--json", *args], env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.code, json.loads(result.stdout), result.stderr


def by_name(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    lines: dict[str, list[dict[str, Any]]] = {}
    for line in doc["lines"]:
        lines.setdefault(line["name"], []).append(line)
    return lines


def env_for(hub: Hub, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {"MODEL": REPO_ID, "MAX_MODEL_LEN": "512", "PORT": str(free_port())}
    return hub_env(hub.url, tmp_path, **{**defaults, "SIDECAR_PORT": str(free_port()), **extra})


def test_doctor_reports_every_line_here_with_no_gpu(tmp_path: Path) -> None:
    with small_model_hub() as hub:
        env = env_for(hub, tmp_path, HF_TOKEN="hf_good")
        code, doc, _ = doctor(env)
        text = run_cli(["doctor"], env)
    lines = by_name(doc)
    assert set(lines) >= SECTIONS, set(lines)
    assert code == ExitCode.OK and doc["ok"] is True, doc
    assert all(line["status"] in ("ok", "warn") for line in doc["lines"])
    assert lines["gpu"][0]["status"] == "warn" and "no NVIDIA GPU" in lines["gpu"][0]["detail"]
    assert lines["hub"][0]["status"] == "ok" and "alice" in lines["hub"][0]["detail"]
    assert "download needs" in lines["disk"][0]["detail"]
    assert lines["memory plan"][0]["status"] == "ok" and doc["plan"]["memory"]["fits"] is True
    assert len(lines["cache"]) == 4 and len(lines["port"]) == 2
    assert all(line["fix"] for line in doc["lines"] if line["status"] != "ok")
    assert text.code == 0 and text.stdout.splitlines()[-1].endswith("0 fail")
    assert "fix: " in text.stdout


def test_blocking_problems_fail_with_their_fixes(tmp_path: Path) -> None:
    with small_model_hub() as hub, socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        env = env_for(hub, tmp_path, HF_TOKEN="hf_wrong", PORT=str(busy.getsockname()[1]))
        write_state(
            env["STATE_DIR"], {"phase": "halted", "waiting": {"reason": "memory: x", "fix": "reset it"}}
        )
        code, doc, _ = doctor(env)
        too_big, big, _ = doctor({**env, "MODEL": "test/wide", "HARDWARE": "gb10", "MAX_MODEL_LEN": "131072"})
    lines = by_name(doc)
    assert code == ExitCode.FAILURE and doc["ok"] is False
    assert lines["hub"][0]["status"] == "fail" and "HF_TOKEN" in lines["hub"][0]["fix"]
    port = lines["port"][0]
    assert port["status"] == "fail" and "in use" in port["detail"] and "PORT" in port["fix"]
    assert lines["launcher"][0] == {
        "name": "launcher",
        "status": "fail",
        "detail": "halted: memory: x",
        "fix": "reset it",
    }
    assert too_big == ExitCode.FAILURE
    plan_line = by_name(big)["memory plan"][0]
    assert plan_line["status"] == "fail" and "MAX_MODEL_LEN" in plan_line["fix"]


def test_an_api_beyond_loopback_with_no_key_is_a_warning_and_a_key_is_never_shown(tmp_path: Path) -> None:
    canary = "sk-canary-0f3c9b1e"
    with small_model_hub() as hub:
        env = env_for(hub, tmp_path, HF_TOKEN="hf_good")
        _, local, _ = doctor({**env, "API_BIND": "127.0.0.1"})
        _, exposed, _ = doctor({**env, "API_BIND": "0.0.0.0"})
        code, keyed, err = doctor({**env, "API_BIND": "0.0.0.0", "API_KEY": canary})
    assert by_name(local)["exposure"][0]["status"] == "ok"
    warned = by_name(exposed)["exposure"][0]
    assert warned["status"] == "warn" and "with no API_KEY" in warned["detail"] and "API_KEY" in warned["fix"]
    assert by_name(keyed)["exposure"][0]["status"] == "ok"
    assert canary not in json.dumps(keyed) + err and code == ExitCode.OK


def test_offline_without_a_cached_snapshot_fails(tmp_path: Path) -> None:
    with small_model_hub() as hub:
        code, doc, _ = doctor(env_for(hub, tmp_path, HF_HUB_OFFLINE="1"))
        assert hub.requests == []  # offline means not one request
    hub_line = by_name(doc)["hub"][0]
    assert code == ExitCode.FAILURE and hub_line["status"] == "fail" and "HF_HUB_OFFLINE" in hub_line["fix"]


def gb10(tmp_path: Path, available_gib: int, free_gib: int, cuda: int = 13000) -> dict[str, Line]:
    """Doctor's lines for a GB10 (NVML stand-in, a meminfo file) serving a 2.6 MB/token model."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        f"MemTotal: {128 * 1024 * 1024} kB\nMemFree: {free_gib * 1024 * 1024} kB\n"
        f"MemAvailable: {available_gib * 1024 * 1024} kB\nCached: {40 * 1024 * 1024} kB\n"
    )
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "config.json").write_text(wide_llama().decode())
    (checkpoint / "model.safetensors").write_bytes(safetensors({"w": 1000}))
    env = {
        "MODEL": str(checkpoint),
        "MAX_MODEL_LEN": "8192",
        "MAX_NUM_SEQS": "4",
        "HARDWARE": "gb10",
        "STATE_DIR": str(tmp_path / "s"),
        "HOME": str(tmp_path),
        "PORT": str(free_port()),
        "SIDECAR_PORT": str(free_port()),
    }
    gpu = FakeNvml("NVIDIA GB10", memory_supported=False, cc=(12, 1))
    gpu.nvmlSystemGetCudaDriverVersion = lambda: cuda  # type: ignore[method-assign]
    lines = judge(gather(env, {}, planned, nvml=lambda: gpu, meminfo=meminfo))
    return {line.name: line for line in lines}


def test_gb10_with_room_but_little_free_memory_advises_dropping_caches(tmp_path: Path) -> None:
    lines = gb10(tmp_path, available_gib=100, free_gib=2)
    assert lines["gpu"].status == "ok" and "NVIDIA GB10, SM 12.1" in lines["gpu"].detail
    assert lines["hardware"].detail.startswith("gb10: 130.7 GB unified")
    cache = lines["page cache"]
    assert cache.status == "warn" and DROP_CACHES in cache.fix and "MemFree 2.1 GB" in cache.detail
    # a GPU is here, so a CPU torch and a missing FlashInfer are blocking
    assert lines["torch"].status == "fail" and lines["flashinfer-python"].status == "fail"


def test_gb10_without_the_memory_to_start_fails(tmp_path: Path) -> None:
    lines = gb10(tmp_path, available_gib=10, free_gib=2)
    memory = lines["memory"]
    assert memory.status == "fail" and "needs" in memory.detail and "MEMORY_WAIT_S" in memory.fix


def test_a_driver_without_cuda_13_fails(tmp_path: Path) -> None:
    lines = gb10(tmp_path, available_gib=100, free_gib=90, cuda=12080)
    driver = lines["driver"]
    assert driver.status == "fail" and "CUDA 12.8" in driver.detail and "580" in driver.fix


def test_doctor_shows_the_last_heal_and_where_its_evidence_is(tmp_path: Path) -> None:
    """A real heal by the sidecar's healer (of a real process), then the real CLI."""
    import asyncio
    import sys

    import psutil

    from entrypoint.state import start_ticks
    from server.heal import Healer

    with small_model_hub() as hub:
        env = env_for(hub, tmp_path, HF_TOKEN="hf_good")
        engine = spawn_execd([sys.executable, "-c", "import time; time.sleep(60)"])
        launched = {
            "phase": "starting",
            "start_id": "s1",
            "pid": engine.pid,
            "pid_start_ticks": start_ticks(engine.pid),
            "argv": psutil.Process(engine.pid).cmdline(),
        }

        async def heal() -> Healer:
            healer = Healer(True, 60.0, env["STATE_DIR"])
            healer.consider(launched, "3 confirmations in a row failed", True, lambda: {"why": "test"})
            assert healer.task is not None
            await asyncio.wait_for(healer.task, 20)
            return healer

        try:
            healer = asyncio.run(heal())
        finally:
            engine.kill()
            engine.wait()
        code, doc, _ = doctor(env)
    (line,) = by_name(doc)["heal"]
    evidence = healer.history[-1].evidence
    assert evidence is not None and Path(evidence).is_file()
    assert line["status"] == "warn" and "3 confirmations in a row failed" in line["detail"]
    assert "engine start s1" in line["detail"] and evidence in line["fix"]
    assert "Fatal Python error: Aborted" in line["fix"] and code == ExitCode.OK
