"""Container contract: run exactly the image's entrypoint and the compose services'
commands with exactly their environment, paths mapped to temp dirs, against the
real CPU engine, a local Hub and real Prometheus. Plus graceful drain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import REPO, clean_env
from tests.support.compose import load_compose
from tests.support.engine import (
    CPU_ENGINE,
    CPU_ENGINE_ENV,
    Engine,
    free_port,
    http_json,
    stop,
    stream_completion,
    wait_healthy,
)
from tests.support.hub import Hub
from tests.support.prom import prometheus, wait_for_series
from tests.support.sidecar import get

pytestmark = pytest.mark.engine
DEFAULT_REPO = "DrQianXu/Qwen3-4B-nvfp4-Compressible"


def mapped(value: str, paths: dict[str, str]) -> str:
    for inside, outside in paths.items():
        value = value.replace(inside, outside)
    return value


def test_image_entrypoint_and_compose_services_run_as_declared(
    checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    image = DockerfileParser(str(REPO / "Dockerfile"))
    entrypoint = json.loads(next(i["value"] for i in image.structure if i["instruction"] == "ENTRYPOINT"))
    compose = load_compose(REPO / "docker-compose.yml", extra={"MAX_MODEL_LEN": "512"})
    api_port, sidecar_port = free_port(), free_port()
    paths = {
        "/cache": str(tmp_path / "cache"),
        "/run/spark-serve": str(tmp_path / "state"),
        "/opt/spark-serve": str(REPO),
    }
    ports = {"8000": str(api_port), "8001": str(sidecar_port), "http://vllm:": "http://127.0.0.1:"}

    def environment(service: str) -> dict[str, str]:
        env = {k: mapped(v, paths) for k, v in image.envs.items()}
        env.update({k: mapped(str(v), paths) for k, v in compose["services"][service]["environment"].items()})
        for key in ("PORT", "SIDECAR_PORT"):
            env[key] = ports[env[key]]
        if "VLLM_URL" in env:
            env["VLLM_URL"] = f"http://127.0.0.1:{api_port}"
        return env

    with Hub() as hub:
        hub.add_dir(DEFAULT_REPO, checkpoint_factory("ct-nvfp4"))
        # Host-only differences: the CPU engine is started as a module, and the Hub is the local one.
        host = {"ENGINE_COMMAND": CPU_ENGINE, "HF_ENDPOINT": hub.url, **CPU_ENGINE_ENV}
        engine_env = clean_env(**environment("vllm"), **host)
        sidecar_env = clean_env(**environment("sidecar"))
        assert engine_env["MODEL"] == "" and engine_env["HF_HOME"] == str(tmp_path / "cache" / "huggingface")
        spark_serve = str(Path(sys.executable).with_name(entrypoint[0]))
        procs = []
        try:
            for service, env in (("sidecar", sidecar_env), ("vllm", engine_env)):
                command = compose["services"][service]["command"]
                with (tmp_path / f"{service}.log").open("wb") as log:
                    procs.append(
                        subprocess.Popen(
                            [spark_serve, *command],
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            engine = Engine(procs[1], f"http://127.0.0.1:{api_port}", tmp_path / "vllm.log")
            wait_healthy(engine)
            sidecar = f"http://127.0.0.1:{sidecar_port}"
            deadline = time.monotonic() + 30
            while get(sidecar + "/health/ready")[0] != 200:
                assert time.monotonic() < deadline, get(sidecar + "/health/ready")
                time.sleep(0.3)
            reply = http_json(
                engine.url + "/v1/chat/completions",
                {"model": "qwen3-4b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            )
            assert reply["model"] == "qwen3-4b"
            hub_cache = (
                tmp_path / "cache" / "huggingface" / "hub" / "models--DrQianXu--Qwen3-4B-nvfp4-Compressible"
            )
            assert (hub_cache / "snapshots").is_dir()  # HF_HOME from the image, mapped to the volume path
            assert json.loads((tmp_path / "state" / "launcher.json").read_text())["phase"] == "starting"
            config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
            config["rule_files"] = [str(REPO / "monitoring" / "alerts.yml")]
            job = config["scrape_configs"][0]
            job["static_configs"][0]["targets"] = [f"127.0.0.1:{sidecar_port}"]
            with prometheus(yaml.safe_dump(config), tmp_path / "prom") as url:
                assert wait_for_series(url, f'sparkserve_vllm_up{{job="{job["job_name"]}"}} == 1')
                assert wait_for_series(url, 'sparkserve_phase{phase="serving"} == 1')
        finally:
            for proc in procs:
                stop(proc)


def test_sigterm_drains_the_streaming_request_and_exits_zero(
    checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(
        MODEL=str(checkpoint_factory("bf16")),
        SERVED_MODEL_NAME="tiny",
        PORT=str(port),
        HOST="127.0.0.1",
        MAX_MODEL_LEN="512",
        SHUTDOWN_TIMEOUT="30",
        ENGINE_COMMAND=CPU_ENGINE,
        STATE_DIR=str(tmp_path / "state"),
        **CPU_ENGINE_ENV,
    )
    with (tmp_path / "engine.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "launch"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = Engine(proc, f"http://127.0.0.1:{port}", tmp_path / "engine.log")
    try:
        wait_healthy(engine)
        body = {"model": "tiny", "prompt": "hello", "max_tokens": 400, "min_tokens": 400, "ignore_eos": True}
        stream = stream_completion(engine.url, body)
        assert stream.started.wait(60)
        os.kill(proc.pid, signal.SIGTERM)  # what `docker stop` sends to the engine
        sent_at = time.monotonic()
        time.sleep(0.5)
        refused = False
        try:
            http_json(
                engine.url + "/v1/completions",
                {"model": "tiny", "prompt": "new", "max_tokens": 2},
                timeout=10,
            )
        except (urllib.error.HTTPError, urllib.error.URLError, ConnectionError):
            refused = True
        stream.thread.join(90)
        assert refused, "a new request was accepted while draining"
        assert stream.finish_reasons()[-1] == "length" and len(stream.chunks) >= 100
        assert proc.wait(40) == 0 and time.monotonic() - sent_at < 35
    finally:
        stop(proc)
