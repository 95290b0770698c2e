"""``spark-serve reset``: forget the failed engine starts and wake a halted launcher."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..plan.options import BY_NAME, option_value
from ..state import RESET_FILE, STARTS_FILE, locked, read_document, write_document


def reset(env: Mapping[str, str], cli: Mapping[str, Any]) -> str:
    state_dir = option_value(BY_NAME["state_dir"], env, cli)
    with locked(state_dir, STARTS_FILE):  # a launch may be recording a start
        history = read_document(state_dir, STARTS_FILE)
        forgotten = len(history) if isinstance(history, list) else 0
        write_document(state_dir, STARTS_FILE, [])
    write_document(state_dir, RESET_FILE, {"at": time.time()})
    return (
        f"reset {Path(state_dir)}: forgot {forgotten} engine start{'s' if forgotten != 1 else ''}; "
        "a halted launcher starts again within seconds"
    )
