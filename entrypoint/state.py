"""The launcher's documents in STATE_DIR, shared with the sidecar.

- ``launcher.json``: the current launch (phase, plan facts, what it waits for);
- ``starts.json``: recent engine starts, for the restart back-off;
- ``ready.json``: written by the sidecar when a start first answers ready;
- ``heals.json``: written by the sidecar each time it ends a hung engine;
- ``reset.json``: written by ``spark-serve reset`` to wake a halted launcher.

Written atomically (temp file in the same directory + rename) so a reader
never sees a half-written document. Never holds a secret.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import StateUnwritableError

STATE_FILE = "launcher.json"
STARTS_FILE = "starts.json"
READY_FILE = "ready.json"
HEALS_FILE = "heals.json"
RESET_FILE = "reset.json"
CLUSTER_FILE = "cluster.json"
PHASES = (
    "pending",
    "downloading",
    "verifying",
    "backing-off",
    "waiting-for-memory",
    "waiting-for-workers",
    "starting",
    "warming-up",
    "serving",
    "halted",
    "failed",
)
WAITING_PHASES = ("backing-off", "waiting-for-memory", "waiting-for-workers", "halted")


def write_document(state_dir: str | Path, name: str, document: Any) -> Path:
    directory = Path(state_dir)
    target = directory / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise StateUnwritableError(str(target), err.strerror or str(err)) from err
    return target


def read_document(state_dir: str | Path, name: str) -> Any:
    """The parsed document, or None when it is missing or unreadable."""
    try:
        return json.loads((Path(state_dir) / name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_state(state_dir: str | Path, state: dict[str, Any]) -> Path:
    return write_document(state_dir, STATE_FILE, {**state, "updated_at": time.time()})


def read_state(state_dir: str | Path) -> dict[str, Any] | None:
    data = read_document(state_dir, STATE_FILE)
    return data if isinstance(data, dict) else None
