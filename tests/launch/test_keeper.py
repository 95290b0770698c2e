"""The log keeper for real: a process that forks it and execs a program that writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

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
    keep_figures(Path(sys.argv[1]))
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
    out = done.stdout.splitlines()
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
    while keepers(kept) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert keepers(kept) == []  # ended with the pipes


def keepers(log: Path) -> list[int]:
    """Running keepers of ``log`` (a zombie waits only for its reaper)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            running = "zombie" not in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if running and b"entrypoint.launch.keeper" in cmdline and str(log).encode() in cmdline:
            found.append(int(pid))
    return found


def test_the_keeper_is_not_in_the_engines_process_tree_and_outlives_its_signals(tmp_path: Path) -> None:
    """vLLM ends its own process tree at shutdown and a heal signals the engine's family:
    neither reaches the keeper, which passes on what the engine wrote after SIGTERM."""
    kept = tmp_path / "starts" / "t.log"
    last = "GPU KV cache size: 7 tokens, Maximum concurrency for 1 tokens per request: 7.00x"
    engine = (
        "import signal, sys, time\n"
        f"def bye(*_):\n    print({last!r}, flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(kept), engine], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2], start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    (keeper,) = keepers(kept)
    assert psutil.Process(keeper).ppid() != proc.pid and os.getsid(keeper) != os.getsid(proc.pid)
    assert psutil.Process(keeper).environ() == {}  # none of the engine's settings
    os.killpg(proc.pid, signal.SIGTERM)  # the engine's whole group, as `stop` does
    rest, _ = proc.communicate(timeout=30)
    assert "KV cache size: 7 tokens" in rest and read_figures(kept.read_text().splitlines()).kv_tokens == 7
