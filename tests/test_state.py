"""The launcher's documents survive a crash: written durably, rewritten under a lock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint import state
from entrypoint.state import STARTS_FILE, locked, read_document, share_with_group, start_ticks, write_document
from tests.conftest import clean_env


def test_a_document_is_fsynced_with_its_folder_before_it_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("folder" if stat.S_ISDIR(mode) else "file")
        real(fd)

    monkeypatch.setattr(state.os, "fsync", fsync)
    write_document(tmp_path / "state", "starts.json", [{"id": "a"}])
    assert synced == ["file", "folder"]  # the data first, then the rename in its folder
    assert read_document(tmp_path / "state", "starts.json") == [{"id": "a"}]
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["starts.json"]  # no temp file left


def test_reset_waits_for_a_launch_that_is_recording_a_start(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    write_document(state_dir, STARTS_FILE, [{"id": "a", "at": 1.0, "argv_id": "x"}])
    env = clean_env(STATE_DIR=str(state_dir))
    with locked(state_dir, STARTS_FILE):  # as `launch` holds it while it rewrites starts.json
        reset = subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "reset"], env=env, stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.5)
        waiting = reset.poll() is None
        write_document(state_dir, STARTS_FILE, [{"id": "a"}, {"id": "b"}])
    out, _ = reset.communicate(timeout=30)
    assert waiting and reset.returncode == 0
    assert "forgot 2 engine starts" in out  # it read what the lock holder wrote, not what was before
    assert json.loads((state_dir / STARTS_FILE).read_text()) == []


def test_start_ticks_name_a_process_by_a_clock_that_never_steps() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine, theirs = start_ticks(os.getpid()), start_ticks(proc.pid)
        assert isinstance(mine, int) and isinstance(theirs, int) and theirs >= mine
        assert start_ticks(proc.pid) == theirs
    finally:
        proc.kill()
        proc.wait()
    assert start_ticks(proc.pid) is None


def test_the_state_folder_is_shared_with_the_sidecars_group(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    share_with_group(folder)
    assert folder.stat().st_mode & 0o7777 == 0o2775
    share_with_group(tmp_path / "missing")  # nothing to share: no error
