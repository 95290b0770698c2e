"""`spark-serve plan` wall time with the memory planner (target <= 0.3 s), beside a
bare interpreter start.

The profile's checkpoint metadata comes from the local Hub stand-in
(tests/support/hub.py) at the seed architecture's dimensions: the first plan
fetches it (shown once, for information); the timed plans read spark-serve's
metadata cache, as every plan after the first does. The project's bytecode is
compiled first, as pip compiles it into the image: a checkout run with
PYTHONDONTWRITEBYTECODE would otherwise parse every module on every plan.
Prints; never asserts.
Run: .venv/bin/python benchmarks/plan_time.py
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.configs import seed_config  # noqa: E402
from tests.support.hub import Hub  # noqa: E402
from tests.test_memory_cli import safetensors  # noqa: E402

RUNS = 25
TARGET_RATIO = 8.0  # plan / bare interpreter
PROFILE, VARIANT, REPO_ID = "axe-strada-28b-nvfp4a16", "mtp", "srswti/axe-strada-28b-nvfp4a16"
CT_NVFP4A16 = {
    "quant_method": "compressed-tensors",
    "format": "nvfp4-pack-quantized",
    "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
}


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    config = seed_config("qwen3_5", mtp_layers=1) | {"quantization_config": CT_NVFP4A16}
    weights = safetensors(
        {"model.language_model.layers.0.mlp.down_proj.weight": 4096, "mtp.layers.0.mlp.weight": 1024}
    )
    hub = Hub()
    hub.add_repo(REPO_ID, {"config.json": json.dumps(config).encode(), "model.safetensors": weights})
    plan = [sys.executable, "-m", "entrypoint", "plan", "--profile", PROFILE, "--variant", VARIANT]
    bare = [sys.executable, "-c", "pass"]
    compileall.compile_dir(REPO / "entrypoint", quiet=1)
    compileall.compile_dir(REPO / "server", quiet=1)
    with hub, tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": home, "HARDWARE": "gb10"}
        first = wall(plan, env)  # fetches and caches the metadata
        plan_times, bare_times = [], []
        for _ in range(RUNS):  # interleaved so both see the same machine load
            plan_times.append(wall(plan, env))
            bare_times.append(wall(bare, env))
    p, b = statistics.median(plan_times), statistics.median(bare_times)
    print(f"first plan (metadata from the local Hub, then cached): {first:.3f} s")
    print(
        f"spark-serve plan with the memory planner: median {p:.3f} s over {RUNS} runs "
        f"(target <= 0.300 s) {'OK' if p <= 0.3 else 'OVER'}"
    )
    ratio = p / b
    verdict = "OK" if ratio <= TARGET_RATIO else "OVER"
    print(f"bare interpreter: median {b:.3f} s; plan / bare = {ratio:.2f}x", end=" ")
    print(f"(target <= {TARGET_RATIO:g}x) {verdict}")


if __name__ == "__main__":
    main()
