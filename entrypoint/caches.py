"""The cache directories a launch writes (in the image, each a named volume) must
be writable by this user before anything starts: a volume made by an older image
can be root-owned, and would otherwise fail deep inside a download or a JIT build."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import CacheUnwritableError

# Each variable names a directory the engine or the launcher writes at run time
# (STATE_DIR has its own check and exit code, 18).
CACHE_VARS = (
    "HF_HOME",
    "VLLM_CACHE_ROOT",
    "TORCHINDUCTOR_CACHE_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "FLASHINFER_WORKSPACE_BASE",
    "TRITON_CACHE_DIR",
    "CUDA_CACHE_PATH",
)
CHOWN_FIX = (
    "a volume made by an older image is owned by root: "
    "docker compose run --rm --user 0 --entrypoint chown vllm -R 990:990 /cache /run/spark-serve"
)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(environ: Mapping[str, str]) -> None:
    """Raise CacheUnwritableError for the first cache directory this user cannot write."""
    for variable in CACHE_VARS:
        value = environ.get(variable)
        if not value:
            continue
        where = _existing(Path(value))
        if os.access(where, os.W_OK | os.X_OK):
            continue
        owner = where.stat().st_uid
        detail = f"{where} is owned by uid {owner} and not writable by uid {os.getuid()}"
        raise CacheUnwritableError(variable, value, detail, CHOWN_FIX)
