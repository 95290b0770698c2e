"""A child process as the launcher records it: only once it has exec'd."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

import psutil


def spawn_execd(argv: Sequence[str], within: float = 30) -> subprocess.Popen[bytes]:
    """Popen `argv` and return once the child's command line is `argv`: between fork and
    exec a child's /proc cmdline is still its parent's, so a record taken then names pytest."""
    proc = subprocess.Popen(list(argv))
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(proc.pid).cmdline() == list(argv):
                return proc
        except psutil.Error:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{argv[0]} did not exec within {within} s")
        time.sleep(0.01)
