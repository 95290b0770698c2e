"""The log keeper for real: a process that forks it and execs a program that writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from entrypoint.engine.logfigures import read_figures

ENGINE = textwrap.dedent(
    """
    import sys, time
    print("INFO starting", flush=True)
    print("(EngineCore pid=1) INFO Model loading took 1.5 GiB memory and 2.000000 seconds", flush=True)
    print("x" * 200000, flush=True)  # a line longer than the keeper matches
    sys.stderr.write("ValueError: Free memory on device cuda:0 (10.0/20.0 GiB) on startup is less\\n")
    sys.stderr.flush()
    print("GPU KV cache size: 1,000 tokens, Maximum concurrency for 512 tokens per request: 1.95x")
    """
)
LAUNCHER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from entrypoint.launch.keeper import keep_figures
    print(keep_figures(Path(sys.argv[1])), flush=True)  # the keeper's PID, before the redirect
    os.execvp(sys.executable, [sys.executable, "-c", sys.argv[2]])
    """
)


def test_the_keeper_passes_both_streams_on_and_keeps_only_the_figure_lines(tmp_path: Path) -> None:
    kept = tmp_path / "starts" / "abc.log"
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(kept), ENGINE],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    keeper_pid, *out = done.stdout.splitlines()
    assert out[0] == "INFO starting" and out[2] == "x" * 200000 and len(out) == 4
    assert "Model loading took" in out[1] and "KV cache size" in out[3]
    assert done.stderr.startswith("ValueError: Free memory") and "KV cache" not in done.stderr
    lines = kept.read_text().splitlines()
    assert len(lines) == 3 and "x" * 100 not in kept.read_text()
    figures = read_figures(lines)
    assert figures.weights_bytes == int(1.5 * (1 << 30)) and figures.kv_tokens == 1000
    assert figures.free_at_check_bytes == 10 * (1 << 30)
    # capture_output returned once both pipes closed: the keeper is ending, or ended
    deadline = time.monotonic() + 10
    while alive(int(keeper_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(int(keeper_pid))


def alive(pid: int) -> bool:
    """Running, not ended (a zombie waits only for its reaper)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
