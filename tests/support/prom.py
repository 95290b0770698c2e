"""Real Prometheus for tests: Debian's package, installed when missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.apt import apt_install
from tests.support.engine import free_port


def ensure_prometheus() -> str:
    """Path of the prometheus binary; installs Debian's package if needed, else skips."""
    found = apt_install("prometheus", "prometheus")
    if found is None:
        pytest.skip(
            "Debian's prometheus package is not installed and cannot be installed here (needs root + apt)"
        )
    return found


def promtool() -> str:
    ensure_prometheus()
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing")
    return found


@contextmanager
def prometheus(config: str, workdir: Path) -> Iterator[str]:
    """Run Prometheus with ``config`` on a loopback port; yields its base URL."""
    binary = ensure_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config)
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5
    ) as r:
        body = json.loads(r.read())
    assert body["status"] == "success"
    return list(body["data"]["result"])


def wait_for_series(url: str, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = query(url, expr)
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus returned no series for {expr} in {timeout}s")
