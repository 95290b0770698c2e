"""``spark-serve reset``: forget the failed engine starts and wake a halted launcher."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..plan.options import BY_NAME, option_value
from ..state import RESET_FILE, STACK_FILE, STARTS_FILE, locked, read_document, write_document


def reset(env: Mapping[str, str], cli: Mapping[str, Any]) -> str:
    """One engine's state folder; with MODELS (STATE_DIR/stack.json) every engine's of the set."""
    state_dir = option_value(BY_NAME["state_dir"], env, cli)
    stack = read_document(state_dir, STACK_FILE)
    engines = stack.get("engines") if isinstance(stack, dict) else None
    if isinstance(engines, list) and engines:
        return "\n".join(
            f"{e.get('name')}: {reset_one(str(e['state_dir']))}" for e in engines if isinstance(e, dict)
        )
    return reset_one(state_dir)


def reset_one(state_dir: str) -> str:
    with locked(state_dir, STARTS_FILE):  # a launch may be recording a start
        history = read_document(state_dir, STARTS_FILE)
        forgotten = len(history) if isinstance(history, list) else 0
        write_document(state_dir, STARTS_FILE, [])
    write_document(state_dir, RESET_FILE, {"at": time.time()})
    return (
        f"reset {Path(state_dir)}: forgot {forgotten} engine start{'s' if forgotten != 1 else ''}; "
        "a halted launcher starts again within seconds"
    )
