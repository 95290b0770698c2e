"""What a download prunes: only its own snapshot's leftovers, and only those nobody
is writing (huggingface_hub's own file lock held by another real process); and a
sha256 from the Hub never names a file unchecked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.errors import ExitCode, ListingInvalidError
from entrypoint.hub import store
from entrypoint.hub.download import checked_sha256
from entrypoint.hub.patterns import RepoFile

SHA_DONE, SHA_BUSY, SHA_OTHER = "a" * 64, "b" * 64, "c" * 64
HOLD = (
    "import sys, time\nfrom filelock import FileLock\n"
    "with FileLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(store, "hf_home", lambda: tmp_path)
    monkeypatch.setattr(store, "hub_cache", lambda: tmp_path / "hub")
    return tmp_path


def test_only_this_snapshots_leftovers_nobody_writes_are_pruned(cache: Path) -> None:
    files = [RepoFile("done.safetensors", 1, SHA_DONE, None), RepoFile("busy.safetensors", 1, SHA_BUSY, None)]
    blobs = cache / "hub" / "models--o--m" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / SHA_DONE).write_bytes(b"complete")  # adopted: its partial is a leftover
    partial = cache / "spark-serve" / "partial"
    partial.mkdir(parents=True)
    for sha in (SHA_DONE, SHA_BUSY, SHA_OTHER):
        (partial / f"{sha}.part").write_bytes(b"p")
    dead = blobs / f"{SHA_DONE}.0badc0de.incomplete"  # a killed huggingface_hub download
    busy = blobs / f"{SHA_BUSY}.12345678.incomplete"  # another process is writing it now
    foreign = blobs / f"{SHA_OTHER}.87654321.incomplete"  # another revision's file
    for path in (dead, busy, foreign):
        path.write_bytes(b"i")
    lock = cache / "hub" / ".locks" / "models--o--m" / f"{SHA_BUSY}.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        removed = store.prune_partials("o/m", files)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(removed) == sorted([partial / f"{SHA_DONE}.part", dead])
    assert busy.exists() and foreign.exists()
    assert (partial / f"{SHA_BUSY}.part").exists()  # resumes on the next start
    assert (partial / f"{SHA_OTHER}.part").exists()  # another repository's, kept for its turn


@pytest.mark.parametrize("value", ["../../etc/passwd", "A" * 64, "a" * 63, "", None, "a" * 64 + "/x"])
def test_a_sha256_that_is_not_64_hex_digits_is_refused(value: object) -> None:
    with pytest.raises(ListingInvalidError) as caught:
        checked_sha256("o/m", "model.safetensors", value)
    assert caught.value.exit_code == ExitCode.INTEGRITY and "model.safetensors" in str(caught.value)
    assert checked_sha256("o/m", "m", "0123456789abcdef" * 4) == "0123456789abcdef" * 4
