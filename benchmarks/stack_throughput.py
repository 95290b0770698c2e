"""Generation tokens/s with the whole stack ÷ the bare engine. Prints; never asserts.

One `spark-serve launch` engine serving the tiny checkpoint, one load:
CONCURRENCY clients sending /v1/completions of TOKENS tokens (`ignore_eos`)
straight to the engine, ROUND_REQUESTS requests a round. Rounds alternate,
in pairs whose order flips each time, between

- stack: `spark-serve sidecar` at its defaults beside the engine (engine polling
  every second, warm-up, idle probes, healing) and a Prometheus-style scraper
  reading the sidecar's /metrics at `monitoring/prometheus.yml`'s interval;
- bare: the same sidecar frozen (SIGSTOP) and the scraper paused: no CPU time,
  no request to the engine, so the engine runs as if alone; freezing instead of
  restarting keeps the sidecar's start-up (imports, warm-up) out of the pairs.

The engine runs one compute thread (OMP_NUM_THREADS=1): on a Spark its CPU side
takes a core or two of twenty, and here the second core is the one the API
server, the load and the stack share, as the other cores are on a Spark.
Round-to-round noise on a shared 2-core machine is about ±15 %, so the result
is pooled over many short pairs: total tokens ÷ total time in each mode, plus
the median of the per-pair ratios.

Target: stack ÷ bare >= 0.98 (nothing of the stack sits in the data path, and
its polling must not take the engine's CPU).

Run: .venv/bin/python benchmarks/stack_throughput.py
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import load  # noqa: E402
from tests.support.checkpoints import bf16_llama  # noqa: E402
from tests.support.engine import (  # noqa: E402
    Engine,
    free_port,
    spawn_launch,
    stop,
    tiny_engine_env,
    wait_healthy,
)
from tests.support.sidecar import get, until  # noqa: E402

PAIRS = 30
CONCURRENCY = 4
TOKENS = 64
ROUND_REQUESTS = 64
SETTLE_S = 0.5


def scrape_interval() -> float:
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    return float(str(config["global"]["scrape_interval"]).removesuffix("s"))


def generate(url: str) -> tuple[int, float]:
    """One round of load: (tokens generated, seconds taken)."""
    return load.generate(url, "tiny", TOKENS, CONCURRENCY, ROUND_REQUESTS)


def ready(url: str) -> bool:
    try:
        return get(url + "/health/ready", timeout=2)[0] == 200
    except OSError:
        return False


class Scraper(threading.Thread):
    """GETs the sidecar's /metrics every ``every`` seconds while ``running`` is set."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.running, self.done = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            if self.running.is_set():
                with contextlib.suppress(OSError):  # frozen mid-request
                    get(self.url + "/metrics", timeout=30)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = tiny_engine_env(root / "state", bf16_llama(root / "ckpt"), SIDECAR_PORT=str(free_port()))
        env["OMP_NUM_THREADS"] = "1"
        proc = spawn_launch(env, root / "engine.log")
        engine = Engine(proc, f"http://127.0.0.1:{env['PORT']}", root / "engine.log")
        with (root / "sidecar.log").open("wb") as sink:
            side = subprocess.Popen(
                [sys.executable, "-m", "entrypoint", "sidecar"],
                env=env,
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{env['SIDECAR_PORT']}"
        scraper = Scraper(url, scrape_interval())
        try:
            wait_healthy(engine, deadline_s=300)
            until(lambda: ready(url), 300, "sidecar ready")
            scraper.start()
            generate(engine.url)  # unmeasured: compile caches, allocator

            def round_(mode: str) -> tuple[int, float]:
                if mode == "stack":
                    os.killpg(side.pid, signal.SIGCONT)
                    scraper.running.set()
                else:
                    scraper.running.clear()
                    os.killpg(side.pid, signal.SIGSTOP)
                time.sleep(SETTLE_S)
                return generate(engine.url)

            totals = {"bare": [0, 0.0], "stack": [0, 0.0]}
            ratios = []
            sidecar_cpu = 0.0
            for i in range(PAIRS):
                rates = {}
                for mode in ("bare", "stack") if i % 2 == 0 else ("stack", "bare"):
                    before = cpu_seconds(side.pid)
                    tokens, seconds = round_(mode)
                    if mode == "stack":
                        sidecar_cpu += cpu_seconds(side.pid) - before
                    totals[mode][0] += tokens
                    totals[mode][1] += seconds
                    rates[mode] = tokens / seconds
                ratios.append(rates["stack"] / rates["bare"])
                print(
                    f"pair {i + 1}/{PAIRS}: bare {rates['bare']:.0f} tok/s, "
                    f"stack {rates['stack']:.0f} tok/s, "
                    f"ratio {ratios[-1]:.3f}",
                    flush=True,
                )
            bare_rate = totals["bare"][0] / totals["bare"][1]
            stack_rate = totals["stack"][0] / totals["stack"][1]
            pooled = stack_rate / bare_rate
            print(
                f"sidecar CPU while the stack rounds ran: {sidecar_cpu:.2f} s in {totals['stack'][1]:.0f} s "
                f"({100 * sidecar_cpu / totals['stack'][1]:.1f} % of one core)"
            )
            print(f"median of the pair ratios: {statistics.median(ratios):.3f}")
            print(
                f"generation tokens/s stack / bare engine ({CONCURRENCY} clients, {TOKENS} tokens each): "
                f"{stack_rate:.0f} / {bare_rate:.0f} = {pooled:.3f} (target >= 0.98) "
                f"{'OK' if pooled >= 0.98 else 'UNDER'}"
            )
        finally:
            scraper.done.set()
            if side.poll() is None:
                os.killpg(side.pid, signal.SIGCONT)
            stop(side, grace=10)
            stop(proc)


if __name__ == "__main__":
    main()
