"""The log keeper: the engine's own memory figures, kept on the state volume.

Just before exec the launcher forks a keeper and points its stdout and stderr at
two pipes. The keeper copies every byte on to where they went before (the
container's log, unchanged) and appends the lines vLLM says its memory figures in
(:data:`entrypoint.engine.logfigures.KEPT`: a few lines a start) to
``STATE_DIR/starts/<start id>.log``. The engine stays this process (exec), so the
container runtime's signals still reach vLLM itself; the keeper ignores SIGTERM,
SIGINT and SIGHUP, so the engine's last lines get through, and ends when both pipes
close (the engine and its children have exited).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
from pathlib import Path
from typing import BinaryIO

from ..engine.logfigures import KEPT

_CHUNK = 1 << 16
_LONGEST_LINE = 1 << 16  # a longer line (a tensor dump) is copied on, not matched


def keep_figures(path: Path) -> int:
    """Fork the keeper for this process's stdout and stderr; its PID."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pipes = [os.pipe() for _ in (1, 2)]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the keeper's own process (tests run it for real)
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            for _, write in pipes:
                os.close(write)
            _copy({read: fd for (read, _), fd in zip(pipes, (1, 2), strict=True)}, path)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    for fd, (read, write) in zip((1, 2), pipes, strict=True):
        os.close(read)
        os.dup2(write, fd)
        os.close(write)
    return pid


def _copy(pipes: dict[int, int], path: Path) -> None:
    """Copy each pipe to its file descriptor until all close; keep the figure lines."""
    selector = selectors.DefaultSelector()
    partial = {read: b"" for read in pipes}
    for read in pipes:
        selector.register(read, selectors.EVENT_READ)
    with path.open("ab", buffering=0) as kept:
        while pipes:
            for key, _ in selector.select():
                read = int(key.fd)
                data = os.read(read, _CHUNK)
                if not data:
                    selector.unregister(read)
                    _keep(kept, partial.pop(read))
                    del pipes[read]
                    continue
                _write_all(pipes[read], data)
                *lines, rest = (partial[read] + data).split(b"\n")
                for line in lines:
                    _keep(kept, line)
                partial[read] = rest if len(rest) <= _LONGEST_LINE else b""


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the log's reader gone: the engine serves on
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def _keep(kept: BinaryIO, line: bytes) -> None:
    text = line.decode("utf-8", "replace")
    if text and KEPT.search(text):
        with contextlib.suppress(OSError):  # a full volume: the engine serves on
            kept.write(text.encode() + b"\n")
