"""The launcher's documents in STATE_DIR, shared with the sidecar.

- ``launcher.json``: the current launch (phase, plan facts, what it waits for);
- ``starts.json``: recent engine starts, for the restart back-off;
- ``ready.json``: written by the sidecar when a start first answers ready;
- ``heals.json``: written by the sidecar each time it ends a hung engine;
- ``reset.json``: written by ``spark-serve reset`` to wake a halted launcher.

Written atomically and durably (temp file in the same directory, fsync,
rename, fsync of the directory) so a reader never sees a half-written document
and a power cut never leaves an empty one. Never holds a secret.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StateUnwritableError

STATE_FILE = "launcher.json"
STARTS_FILE = "starts.json"
READY_FILE = "ready.json"
HEALS_FILE = "heals.json"
RESET_FILE = "reset.json"
CLUSTER_FILE = "cluster.json"
STACK_FILE = "stack.json"  # MODELS: every engine of the set (written by the launcher)
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


def atomic_write(target: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``target`` so that a crash or power cut leaves the old
    file or the new one, never an empty one: temp file, fsync, rename, fsync the folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def share_with_group(state_dir: str | Path) -> None:
    """Make the state folder writable by its group (setgid, 2775), where this user owns it.

    The sidecar runs as another uid in the launcher's group (compose) and writes its
    records (ready, heals) here; a volume made by an older image is 0755."""
    with contextlib.suppress(OSError):
        folder = Path(state_dir)
        info = folder.stat()
        if info.st_uid == os.getuid() and (info.st_mode & 0o2070) != 0o2070:
            folder.chmod((info.st_mode & 0o7777) | 0o2070)


def write_document(state_dir: str | Path, name: str, document: Any) -> Path:
    directory = Path(state_dir)
    target = directory / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps(document, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise StateUnwritableError(str(target), err.strerror or str(err)) from err
    return target


@contextlib.contextmanager
def locked(state_dir: str | Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of ``name`` (``launch`` and
    ``reset`` both rewrite ``starts.json``)."""
    directory = Path(state_dir)
    lock = directory / f".{name}.lock"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 - held for the block
    except OSError as err:
        raise StateUnwritableError(str(lock), err.strerror or str(err)) from err
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


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


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``
    field 22): a clock that never steps, unlike wall-clock start times after an NTP
    correction. None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    try:
        return int(fields[19])  # field 22 overall: 3rd after comm is index 0
    except (IndexError, ValueError):
        return None
