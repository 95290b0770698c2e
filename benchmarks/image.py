"""The image through compose: build time, then cold and warm time to ready.

On the STAND-IN base (tests/standin: vLLM's CPU build) with the tests' CPU
override, a tiny checkpoint on the local Hub:
- build: `docker compose build --no-cache` (everything the Dockerfile adds), then
  a rebuild with Docker's layer cache;
- cold: `docker compose up -d` on new volumes until the sidecar is ready
  (download, load, compile, warm-up);
- warm: `docker compose restart vllm` until ready again (caches on volumes).
Prints seconds and warm ÷ cold, measured in one run. Never asserts.
Run: .venv/bin/python benchmarks/image.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402

from tests.standin.build import ensure_standin  # noqa: E402
from tests.support.checkpoints import bf16_llama  # noqa: E402
from tests.support.docker import Compose, docker_engine  # noqa: E402
from tests.support.hub import Hub  # noqa: E402
from tests.support.stack import OVERRIDE, TINY_REPO, Stack, compose_env, prometheus_standin  # noqa: E402

T = TypeVar("T")


def timed(step: str, action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = action()
    took = time.perf_counter() - start
    print(f"{step:<44} {took:7.1f} s", flush=True)
    return result, took


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, docker_engine() as docker, Hub() as hub:
        work = Path(tmp)
        start = time.perf_counter()
        base = ensure_standin(docker)
        print(
            f"{'stand-in base (built once per machine)':<44} {time.perf_counter() - start:7.1f} s", flush=True
        )
        hub.add_dir(TINY_REPO, bf16_llama(work / "tiny"))
        env = compose_env(docker, base, prometheus_standin(docker, base), hub, work)
        compose = Compose(
            docker, [REPO / "docker-compose.yml", OVERRIDE], f"sparkserve-bench-{time.time_ns()}", env
        )
        api, side = (f"http://127.0.0.1:{env[k]}" for k in ("TEST_API_PORT", "TEST_SIDECAR_PORT"))
        stack = Stack(compose, hub, api, side, 0)
        try:
            timed("image build, no layer cache", lambda: compose("build", "--no-cache", timeout=1800))
            timed("image rebuild, layer cache", lambda: compose("build", timeout=900))

            def up() -> None:
                compose("up", "-d", timeout=600)
                stack.wait(stack.ready, 900, "ready")

            def restart() -> None:
                first = stack.launcher()["start_id"]
                compose("restart", "vllm", timeout=300)
                stack.wait(
                    lambda: stack.ready() and stack.launcher()["start_id"] != first, 900, "ready again"
                )

            _, cold = timed("cold: up on new volumes -> ready", up)
            _, warm = timed("warm: restart vllm -> ready", restart)
            print(f"{'warm / cold time to ready':<44} {warm / cold:7.2f}")
        finally:
            compose("down", "-v", "-t", "5", check=False, timeout=300)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except pytest.skip.Exception as skipped:
        print(f"benchmarks/image.py: skipped: {skipped}", file=sys.stderr)
        raise SystemExit(0) from None
