"""Download throughput ÷ huggingface_hub's own `hf download` from the same local Hub
(same files, interleaved, median of 3; target >= 0.95), and the bytes re-sent
after the process is killed halfway through a large file (target: at most one
10 MiB chunk per interrupted file). Prints; never asserts.

Run: .venv/bin/python benchmarks/download.py
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.downloads import CHUNK, SMALL, MiB, hub_env, start_download, wait_for  # noqa: E402
from tests.support.hub import Fault, Hub  # noqa: E402

RUNS = 3
REPO_ID = "bench/model"
HF = str(Path(sys.executable).with_name("hf"))


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    shards = {f"model-0000{i}-of-00004.safetensors": os.urandom(256 * MiB) for i in range(1, 5)}
    total = sum(len(v) for v in shards.values())
    with Hub() as hub, tempfile.TemporaryDirectory() as tmp:
        hub.add_repo(REPO_ID, {**SMALL, **shards})
        ours, theirs = [], []
        for i in range(RUNS):
            home = Path(tmp) / f"run{i}"
            env = hub_env(hub.url, home, MODEL=REPO_ID, PROGRESS_INTERVAL="60")
            pair = [
                (ours, [sys.executable, "-m", "entrypoint", "download"], home / "hf"),
                (theirs, [HF, "download", REPO_ID, "--cache-dir", str(home / "hf-cli")], home / "hf-cli"),
            ]
            for times, argv, cache in pair if i % 2 == 0 else reversed(pair):
                times.append(timed(argv, env))
                shutil.rmtree(cache, ignore_errors=True)
            print(
                f"run {i + 1}: spark-serve {total / ours[-1] / 1e6:.0f} MB/s, "
                f"hf download {total / theirs[-1] / 1e6:.0f} MB/s",
                flush=True,
            )
        ratio = statistics.median(t / o for o, t in zip(ours, theirs, strict=True))
        print(
            f"throughput spark-serve / hf download: median ratio {ratio:.3f} (target >= 0.95) "
            f"{'OK' if ratio >= 0.95 else 'UNDER'}"
        )

        big = next(iter(shards))
        home = Path(tmp) / "resume"
        env = hub_env(hub.url, home, MODEL=REPO_ID, PROGRESS_INTERVAL="60")
        hub.reset_counters()
        hub.faults.append(Fault("stall", path=big, after=len(shards[big]) // 2, seconds=60))
        proc = start_download(env, home.parent / "resume.log")
        wait_for(lambda: hub.bytes_sent[big] >= len(shards[big]) // 2, timeout=120)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hub.faults.clear()
        subprocess.run(
            [sys.executable, "-m", "entrypoint", "download"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        resent = hub.bytes_sent[big] - len(shards[big])
        print(
            f"killed halfway through a {len(shards[big]) // MiB} MiB file: {resent / MiB:.1f} MiB re-sent "
            f"(target <= {CHUNK // MiB} MiB) {'OK' if resent <= CHUNK else 'OVER'}"
        )


if __name__ == "__main__":
    main()
