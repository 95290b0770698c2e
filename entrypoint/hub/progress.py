"""Download progress: thread-safe counters and a reporter that prints a line
every few seconds (readable in ``docker logs``; no carriage returns) and hands
the same numbers to the state file."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

RATE_WINDOW_S = 10.0


class Progress:
    def __init__(
        self,
        files_total: int,
        bytes_total: int,
        *,
        files_done: int = 0,
        bytes_done: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files_total, self.bytes_total = files_total, bytes_total
        self.files_done, self.bytes_done = files_done, bytes_done
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int]] = deque([(clock(), bytes_done)])

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_done += n
            now = self._clock()
            self._samples.append((now, self.bytes_done))
            while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
                self._samples.popleft()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            (t0, b0), now = self._samples[0], self._clock()
            rate = (self.bytes_done - b0) / (now - t0) if now > t0 else 0.0
            left = max(self.bytes_total - self.bytes_done, 0)
            return {
                "files_done": self.files_done,
                "files_total": self.files_total,
                "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total,
                "rate_bytes_per_s": round(rate, 1),
                "eta_s": round(left / rate, 1) if rate > 0 else None,
            }

    def bar_class(self) -> type:
        """A tqdm-compatible class for huggingface_hub's http_get that counts bytes here."""
        progress = self

        class _Counter:
            def __init__(self, **_: Any) -> None:
                pass

            def __enter__(self) -> _Counter:
                return self

            def __exit__(self, *_: object) -> None:
                pass

            def update(self, n: float | None = 1) -> None:
                progress.add_bytes(int(n or 0))

        return _Counter


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_line(label: str, snap: dict[str, Any]) -> str:
    return (
        f"spark-serve: downloading {label}: {snap['files_done']}/{snap['files_total']} files, "
        f"{_size(snap['bytes_done'])}/{_size(snap['bytes_total'])}, "
        f"{_size(snap['rate_bytes_per_s'])}/s, ETA {_duration(snap['eta_s'])}"
    )


class Reporter:
    """Calls ``on_update`` and prints a progress line every ``interval`` seconds."""

    def __init__(
        self,
        progress: Progress,
        label: str,
        interval: float,
        on_update: Callable[[dict[str, Any]], None],
        stream: TextIO | None = None,
    ) -> None:
        self.progress, self.label, self.interval = progress, label, interval
        self.on_update, self.stream = on_update, stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)

    def _emit(self) -> None:
        snap = self.progress.snapshot()
        print(format_line(self.label, snap), file=self.stream, flush=True)
        try:
            self.on_update(snap)
        except OSError as err:  # progress in the state file is best effort; the download goes on
            print(f"spark-serve: progress not recorded: {err}", file=self.stream, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def __enter__(self) -> Reporter:
        self._emit()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._emit()
