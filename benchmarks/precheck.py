"""What vLLM's own processes hold by its start check, on vLLM's CPU build.

vLLM reads free memory for its start check once its API server and engine core
exist (on a GPU, also the CUDA context). This starts the real CPU engine with a
utilization it must refuse and no KV size (so the CPU worker runs the check),
reads the free memory vLLM's refusal names (:mod:`entrypoint.engine.logfigures`)
and subtracts it from the same figure read just before the start, by vLLM's own
function (``vllm.utils.cpu_resource_utils.get_memory_node_info``). 3 runs; prints
each and the median, in GiB: the ``cpu`` entry's ``precheck_gb`` in
configs/hardware.yaml. Never asserts. Run: .venv/bin/python benchmarks/precheck.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from entrypoint.engine.logfigures import GIB, read_figures  # noqa: E402
from tests.conftest import clean_env  # noqa: E402
from tests.support.checkpoints import bf16_llama  # noqa: E402
from tests.support.engine import CPU_ENGINE_ENV, free_port  # noqa: E402

RUNS = 3


def available_now() -> int:
    from vllm.utils.cpu_resource_utils import get_memory_node_info

    return int(get_memory_node_info(0).available_memory)


def one_start(ckpt: Path) -> float | None:
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--enforce-eager",
            "--model", str(ckpt), "--max-model-len", "512", "--port", str(free_port()), "--host", "127.0.0.1",
            "--gpu-memory-utilization", "0.9999"]  # fmt: skip
    before = available_now()
    done = subprocess.run(argv, env=clean_env(**CPU_ENGINE_ENV), capture_output=True, text=True, timeout=300)
    figures = read_figures((done.stdout + done.stderr).splitlines())
    if figures.free_at_check_bytes is None:
        print(f"  no refusal in the engine's output (exit {done.returncode})", file=sys.stderr)
        return None
    return (before - figures.free_at_check_bytes) / GIB


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = bf16_llama(Path(tmp) / "ckpt")
        found = []
        for i in range(RUNS):
            used = one_start(ckpt)
            print(
                f"run {i + 1}: {'-' if used is None else f'{used:.2f} GiB'} held by vLLM at its start check"
            )
            if used is not None:
                found.append(used)
    if found:
        print(f"median: {statistics.median(found):.2f} GiB (vLLM's CPU build, this machine)")


if __name__ == "__main__":
    main()
