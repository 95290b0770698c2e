"""The launcher's state file, shared with the sidecar through STATE_DIR.

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
PHASES = ("pending", "downloading", "verifying", "starting", "serving", "failed")


def write_state(state_dir: str | Path, state: dict[str, Any]) -> Path:
    directory = Path(state_dir)
    target = directory / STATE_FILE
    document = {**state, "updated_at": time.time()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".launcher.", suffix=".tmp", dir=directory)
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


def read_state(state_dir: str | Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
