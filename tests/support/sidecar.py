"""Start ``spark-serve sidecar`` for tests."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.support.engine import stop


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def status(url: str) -> dict[str, Any]:
    """The sidecar's /status document."""
    return dict(json.loads(get(url + "/status")[1]))


def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait (bounded) for ``condition``; fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(0.1)


@contextmanager
def sidecar(env: Mapping[str, str], log: Path, nofile: int | None = None) -> Iterator[str]:
    """``spark-serve sidecar`` with ``env``; ``nofile`` lowers its file-descriptor limit."""
    url = f"http://127.0.0.1:{env['SIDECAR_PORT']}"

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "sidecar"],
            env=dict(env),
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(url + "/health/live", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sidecar did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        stop(proc, grace=10)
