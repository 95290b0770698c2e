"""The real image and the real ``docker-compose.yml`` on this machine: the image
built by compose on the stand-in base (``tests/standin``), the services run with
``tests/stack/cpu.override.yml`` against a local Hub on loopback.

Prometheus's image (``prom/prometheus``) cannot be pulled here either: its
STAND-IN is Debian's ``prometheus`` 2.42 binary (the official image has 3.5)
on the stand-in base, run as ``nobody`` with ``/bin/prometheus`` as its
entrypoint, as in the official image. Grafana has no stand-in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO
from tests.support.docker import Compose, Docker
from tests.support.engine import free_port
from tests.support.hub import Hub
from tests.support.prom import ensure_prometheus
from tests.support.sidecar import get

OVERRIDE = REPO / "tests" / "stack" / "cpu.override.yml"
IMAGE = "spark-serve-test/spark-serve:cpu-standin"
TINY_REPO = "spark-test/tiny-llama"
SECOND_REPO = "spark-test/tiny-llama-two"  # the same checkpoint, served beside it with MODELS
# Not eager (unlike tests/support/engine.py): the stack tests show torch.compile's cache on its volume.
CPU_ENGINE = "python3 -m vllm.entrypoints.openai.api_server --model {model}"


def prometheus_standin(docker: Docker, base: str) -> str:
    """A Prometheus image made of Debian's binary on the stand-in base (see the module doc)."""
    binary = Path(ensure_prometheus()).resolve()
    key = hashlib.sha256(binary.read_bytes() + base.encode()).hexdigest()[:12]
    tag = f"spark-serve-test/prometheus-standin:{key}"
    if docker.has_image(tag):
        return tag
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(binary, Path(tmp) / "prometheus")
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY prometheus /bin/prometheus\n"
            "RUN mkdir -p /prometheus /etc/prometheus && chown 65534:65534 /prometheus\n"
            "USER 65534:65534\nWORKDIR /prometheus\n"
            'ENTRYPOINT ["/bin/prometheus"]\n'
        )
        docker.run("build", "--network", "host", "-q", "-t", tag, tmp)
    return tag


@dataclass
class Stack:
    compose: Compose
    hub: Hub
    api: str
    sidecar: str
    prometheus_port: int

    def status(self) -> dict[str, Any]:
        return dict(json.loads(get(self.sidecar + "/status")[1]))

    def ready(self) -> bool:
        try:
            return get(self.sidecar + "/health/ready", timeout=3)[0] == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait(self, condition: Callable[[], bool], seconds: float, what: str, *services: str) -> None:
        """Until ``condition``; past ``seconds``, fail with the logs of ``services`` (all)."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--no-color", "--tail", "60", *services, check=False).stdout
                raise AssertionError(f"not within {seconds}s: {what}\n{logs[-6000:]}")
            time.sleep(0.5)

    def in_engine(self, *command: str, check: bool = True) -> str:
        return self.compose("exec", "-T", "vllm", *command, check=check).stdout

    def launcher(self) -> dict[str, Any]:
        return dict(json.loads(self.in_engine("cat", "/run/spark-serve/launcher.json")))


def compose_env(
    docker: Docker, base: str, prometheus: str, hub: Hub, work: Path, **extra: str
) -> dict[str, str]:
    """The variables compose interpolates: the stack's own settings (as a user's .env
    would set them) and the override's ports and addresses."""
    api, side, prom = free_port(), free_port(), free_port()
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    # Host networking: the sidecar is on loopback, not at the service name.
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{side}"]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    secrets = work / "secrets"  # what ./secrets is on a Spark: the Ray token for the worker
    secrets.mkdir(exist_ok=True)
    (secrets / "ray_token").write_text("spark-serve-test-ray-token-" + "0" * 32 + "\n")
    (secrets / "ray_token").chmod(0o644)
    return {
        "SECRETS_DIR": str(secrets),
        **docker.env,
        "BASE_IMAGE": base,
        "SPARK_SERVE_IMAGE": IMAGE,
        "TEST_PROMETHEUS_IMAGE": prometheus,
        "TEST_PROMETHEUS_CONFIG": str(work / "prometheus.yml"),
        "TEST_API_PORT": str(api),
        "TEST_SIDECAR_PORT": str(side),
        "TEST_PROMETHEUS_PORT": str(prom),
        "TEST_HF_ENDPOINT": hub.url,
        "TEST_ENGINE_COMMAND": CPU_ENGINE,
        "MODEL": TINY_REPO,
        "SERVED_MODEL_NAME": "tiny",
        "MAX_MODEL_LEN": "512",
        # The drained stops' streams (tests/support/drain.py): room for a loaded machine;
        # a frozen engine's heal waits this before its SIGKILL.
        "SHUTDOWN_TIMEOUT": "20",
        "PROGRESS_INTERVAL": "1",
        "PROBE_INTERVAL": "2",
        "PROBE_TIMEOUT": "10",
        "HEAL_AFTER": "2",
        "HEAL_BACKOFF_S": "1",
        "RESTART_BACKOFF_S": "1",
        **extra,
    }
