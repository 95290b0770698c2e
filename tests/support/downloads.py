"""Helpers for download tests: a local Hub with repos, and the real CLI against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO, CliResult, clean_env

MiB = 1 << 20
CHUNK = 10 * MiB  # huggingface_hub writes downloads in chunks of this size
SMALL = {
    "config.json": b'{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}',
    "tokenizer.json": b'{"version": "1.0"}',
}


def hub_env(hub_url: str, home: Path, **extra: str) -> dict[str, str]:
    defaults = {
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(home / "hf"),
        "STATE_DIR": str(home / "state"),
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PROGRESS_INTERVAL": "0.5",
    }
    return clean_env(**{**defaults, **extra})


def download(env: dict[str, str], *args: str) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint", "download", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def start_download(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "download"],
            env=env,
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def state(home: Path) -> dict[str, object]:
    return json.loads((home / "state" / "launcher.json").read_text())


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def mount_tmpfs(path: Path, size_mib: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
