"""Time-to-ready through `spark-serve launch` ÷ the bare engine command.

Same tiny checkpoint, same argv (taken from `spark-serve plan --json`), runs
interleaved, 3 each; prints the median ratio (target <= 1.03). Never asserts.
Run: .venv/bin/python benchmarks/launch_ready.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import clean_env  # noqa: E402
from tests.support.checkpoints import bf16_llama  # noqa: E402
from tests.support.engine import CPU_ENGINE, CPU_ENGINE_ENV, Engine, free_port, stop, wait_healthy  # noqa: E402

RUNS = 3


def time_to_ready(argv: list[str], env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    engine = Engine(proc, f"http://127.0.0.1:{env['PORT']}", log)
    try:
        wait_healthy(engine, deadline_s=300)
        return time.perf_counter() - start
    finally:
        stop(proc)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = bf16_llama(root / "ckpt")
        launch_t, bare_t = [], []
        for i in range(RUNS + 1):
            port = str(free_port())
            env = clean_env(
                MODEL=str(ckpt),
                PORT=port,
                HOST="127.0.0.1",
                MAX_MODEL_LEN="512",
                STATE_DIR=str(root / "state"),
                ENGINE_COMMAND=CPU_ENGINE,
                **CPU_ENGINE_ENV,
            )
            plan = subprocess.run(
                [sys.executable, "-m", "entrypoint", "plan", "--json"],
                env=env,
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            )
            bare_argv = json.loads(plan.stdout)["argv"]
            launch_argv = [sys.executable, "-m", "entrypoint", "launch"]
            if i == 0:  # warm-up: fills the OS and compile caches for both
                time_to_ready(bare_argv, env, root / "warmup.log")
                continue
            pair = [(launch_t, launch_argv, "l"), (bare_t, bare_argv, "b")]
            for times, argv, tag in pair if i % 2 else reversed(pair):  # alternate who goes first
                times.append(time_to_ready(argv, env, root / f"{tag}{i}.log"))
            print(f"run {i}: launch {launch_t[-1]:.2f} s, bare engine {bare_t[-1]:.2f} s", flush=True)
        ratios = [a / b for a, b in zip(launch_t, bare_t, strict=True)]
        ratio = statistics.median(ratios)
        print(
            f"time-to-ready launch / bare: median ratio {ratio:.3f} (target <= 1.03) "
            f"{'OK' if ratio <= 1.03 else 'OVER'}"
        )


if __name__ == "__main__":
    main()
