from __future__ import annotations

import io

import pytest

from entrypoint.errors import DiskFullError
from entrypoint.hub.download import check_disk
from entrypoint.hub.progress import Progress, Reporter, format_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_follow_recent_bytes() -> None:
    clock = Clock()
    progress = Progress(4, 1_000_000_000, files_done=1, bytes_done=200_000_000, clock=clock)
    clock.now += 4
    progress.add_bytes(400_000_000)
    snap = progress.snapshot()
    assert snap["rate_bytes_per_s"] == 100_000_000 and snap["eta_s"] == 4.0
    line = format_line("org/model@abc", snap)
    assert line == (
        "spark-serve: downloading org/model@abc: 1/4 files, 600.0 MB/1.0 GB, 100.0 MB/s, ETA 0m04s"
    )


def test_reporter_prints_lines_and_survives_a_failing_state_write() -> None:
    stream = io.StringIO()
    updates: list[dict[str, object]] = []

    def on_update(snap: dict[str, object]) -> None:
        updates.append(snap)
        raise OSError("read-only state volume")

    with Reporter(Progress(1, 10), "r", 60, on_update, stream):
        pass
    lines = stream.getvalue().splitlines()
    assert len(updates) == 2 and "\r" not in stream.getvalue()
    assert (
        lines[0].startswith("spark-serve: downloading r: 0/1 files") and "progress not recorded" in lines[1]
    )


def test_disk_check_keeps_a_margin() -> None:
    check_disk(0, 0, "/cache")
    check_disk(10**9, 2 * 10**9, "/cache")
    with pytest.raises(DiskFullError, match=r"need 1\.27 GB, 1\.20 GB free"):
        check_disk(10**9, 12 * 10**8, "/cache")
