"""`spark-serve plan` wall time (target <= 0.3 s), beside a bare interpreter start.

Prints; never asserts. Run: .venv/bin/python bench/plan_time.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = 15


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    plan = [
        sys.executable,
        "-m",
        "entrypoint",
        "plan",
        "--profile",
        "axe-strada-28b-nvfp4a16",
        "--variant",
        "mtp",
    ]
    bare = [sys.executable, "-c", "pass"]
    plan_times, bare_times = [], []
    for _ in range(RUNS):  # interleaved so both see the same machine load
        plan_times.append(wall(plan))
        bare_times.append(wall(bare))
    p, b = statistics.median(plan_times), statistics.median(bare_times)
    print(
        f"spark-serve plan: median {p:.3f} s over {RUNS} runs (target <= 0.300 s) "
        f"{'OK' if p <= 0.3 else 'OVER'}"
    )
    print(f"bare interpreter: median {b:.3f} s; plan / bare = {p / b:.2f}x")


if __name__ == "__main__":
    main()
