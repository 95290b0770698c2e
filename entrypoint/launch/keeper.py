"""The log keeper: the engine's own memory figures, kept on the state volume.

Just before exec the launcher starts a keeper (``python3 -m entrypoint.launch.keeper
<log>``, so ``ps`` names it) and points its own stdout and stderr at two pipes. The
keeper copies every byte on to where they went before (the container's log,
unchanged) and appends the lines vLLM says its memory figures in
(:data:`entrypoint.engine.logfigures.KEPT`: a few lines a start) to
``STATE_DIR/starts/<start id>.log``.

The engine stays this process (exec), so the container runtime's signals still reach
vLLM itself. The keeper is not the engine's child (started through an intermediate
process that exits) and has its own session, so neither vLLM's shutdown of its
process tree nor the sidecar's signals to the engine's family reach it; it ignores
SIGTERM, SIGINT and SIGHUP, gets the engine's last lines (the stacks a heal asks
for among them), and ends when both pipes close: the engine and its children have
exited. It runs with an empty environment: it needs none of the engine's settings.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from ..engine.logfigures import KEPT

_CHUNK = 1 << 16
_LONGEST_LINE = 1 << 16  # a longer line (a tensor dump) is copied on, not matched


def keep_figures(path: Path) -> None:
    """Start the keeper for this process's stdout and stderr (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pipes = [os.pipe() for _ in (1, 2)]
    outputs = [os.dup(1), os.dup(2)]  # where the engine's output went until now
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the forked process (tested for real)
        try:
            os.setsid()
            if os.fork() == 0:
                for _, write in pipes:
                    os.close(write)
                pairs = [f"{read}:{out}" for (read, _), out in zip(pipes, outputs, strict=True)]
                for fd in (*(read for read, _ in pipes), *outputs):
                    os.set_inheritable(fd, True)
                os.execve(sys.executable, [sys.executable, "-m", __name__, str(path), *pairs], {})
        finally:
            os._exit(0)
    os.waitpid(middle, 0)
    for fd, (read, write) in zip((1, 2), pipes, strict=True):
        os.close(read)
        os.dup2(write, fd)
        os.close(write)
    for out in outputs:
        os.close(out)


def main(argv: list[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pipes = {int(read): int(out) for read, out in (pair.split(":") for pair in argv[1:])}
    _copy(pipes, Path(argv[0]))


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


if __name__ == "__main__":
    main(sys.argv[1:])
