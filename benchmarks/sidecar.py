"""Sidecar under load, beside the engine it fronts. Prints; never asserts.

1. /metrics p50/p99 with 32 concurrent scrapers while the engine generates,
   ÷ vLLM's own /metrics under the same load (interleaved rounds; target <= 1.5).
   Neither server is pinned: both get the same share of the machine (pinning only
   the sidecar to a core the CPU engine's OpenMP threads also spin on would time
   the scheduler, not the sidecar).
2. /health/ready requests per second with the sidecar pinned to one core
   (target >= 1000).

Run: .venv/bin/python benchmarks/sidecar.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import clean_env  # noqa: E402
from tests.support.checkpoints import bf16_llama  # noqa: E402
from tests.support.engine import CPU_ENGINE, CPU_ENGINE_ENV, Engine, free_port, http_json, stop, wait_healthy  # noqa: E402
from tests.support.sidecar import get  # noqa: E402

SCRAPERS = 32
ROUNDS = 40


async def _get(host: str, port: int, path: str, count: int, latencies: list[float]) -> None:
    """Keep-alive HTTP/1.1 GETs on one connection (a minimal client, cheap next to the server)."""
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for _ in range(count):
        start = time.perf_counter()
        writer.write(request)
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
    writer.close()


async def load(url: str, path: str, clients: int, per_client: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    await asyncio.gather(*(_get(host, int(port), path, per_client, latencies) for _ in range(clients)))
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def generate(engine: Engine, until: float) -> None:
    while time.monotonic() < until:
        try:
            http_json(engine.url + "/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 64})
        except OSError:  # the engine is being stopped
            return


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = clean_env(
            MODEL=str(bf16_llama(root / "ckpt")),
            SERVED_MODEL_NAME="tiny",
            PORT=str(free_port()),
            HOST="127.0.0.1",
            MAX_MODEL_LEN="512",
            ENGINE_COMMAND=CPU_ENGINE,
            STATE_DIR=str(root / "s"),
            SIDECAR_PORT=str(free_port()),
            **CPU_ENGINE_ENV,
        )
        engine_proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "launch"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        side_proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "sidecar"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        engine = Engine(engine_proc, f"http://127.0.0.1:{env['PORT']}", root / "none.log")
        sidecar = f"http://127.0.0.1:{env['SIDECAR_PORT']}"
        try:
            wait_healthy(engine, deadline_s=300)
            while get(sidecar + "/health/ready")[0] != 200:
                time.sleep(0.2)
            threading.Thread(target=generate, args=(engine, time.monotonic() + 600), daemon=True).start()
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(ROUNDS):  # short rounds, interleaved: both see the machine's stalls alike
                ours += asyncio.run(load(sidecar, "/metrics", SCRAPERS, 1))
                theirs += asyncio.run(load(engine.url, "/metrics", SCRAPERS, 1))
            for q in (50, 99):
                a, b = pct(ours, q), pct(theirs, q)
                print(
                    f"/metrics p{q}: sidecar {a * 1e3:.1f} ms, vLLM {b * 1e3:.1f} ms, ratio {a / b:.2f} "
                    f"(target <= 1.5) {'OK' if a / b <= 1.5 else 'OVER'}"
                )
            os.sched_setaffinity(side_proc.pid, {0})  # part 2: the sidecar on one core
            start = time.perf_counter()
            done = len(asyncio.run(load(sidecar, "/health/ready", 16, 500)))
            rps = done / (time.perf_counter() - start)
            print(
                f"/health/ready on one core: {rps:.0f} requests/s (target >= 1000) "
                f"{'OK' if rps >= 1000 else 'UNDER'}"
            )
        finally:
            stop(side_proc)
            stop(engine_proc)


if __name__ == "__main__":
    if os.cpu_count() and os.cpu_count() < 2:
        print("needs 2 cores: one for the sidecar, one for the rest")
    main()
