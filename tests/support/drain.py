"""A stop that drains, shown with streams in flight whenever its SIGTERM lands.

The time from ``docker compose stop`` to SIGTERM in the engine is not known (1-10 s
on a loaded 2-core machine), nor the rate the tiny CPU model streams at then, so no
one stream of a fixed length is sure to be in flight then and to fit the drain.
Here three streams of unequal lengths are kept in flight while the stop runs (a new
one of the same length starts as one ends). Between one stream's last token and
its successor's admission the engine holds neither; streams of one length end
together and leave such a gap for all of them at once, unequal ones drift apart, so
whenever SIGTERM lands some are in the engine (vLLM logs how many it drains), and
each must end at its length. One started after SIGTERM is refused before its first
token (vLLM answers 500 to what arrives while it drains; then the port closes),
which is no cut; the first refused one ends the starting.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.engine import Stream, stream_completion

DRAINING = re.compile(r"\[shutdown\] EngineCore: draining in-flight requests count=[1-9]")  # vLLM's own line
# 1-2 s a stream on an idle machine; meant to fit the 20 s drain (SHUTDOWN_TIMEOUT) on a
# loaded one, which a saturated machine can still stream too slowly for
LENGTHS = (120, 150, 180)


def body(model: str, tokens: int) -> dict[str, Any]:
    return {"model": model, "prompt": "hello", "max_tokens": tokens, "min_tokens": tokens, "ignore_eos": True}


def streams_across(stop: Callable[[], Any], url: str, model: str) -> tuple[list[Stream], float]:
    """Run ``stop`` in a thread with a stream of each of :data:`LENGTHS` in flight until
    it returns or the server refuses one; every stream read to its end. Returns the
    streams and the seconds ``stop`` took."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            stop()
        except BaseException as err:  # re-raised in the test's thread
            failed.append(err)

    slots = [stream_completion(url, body(model, tokens)) for tokens in LENGTHS]
    for stream in slots:
        assert stream.started.wait(60), f"a stream did not start before the stop: {stream.error}"
    streams = list(slots)
    stopper, began = threading.Thread(target=run), time.monotonic()
    stopper.start()
    while stopper.is_alive() and len(streams) < 500:
        if any(not s.thread.is_alive() and not s.text_chunks() for s in streams):
            break  # refused: the engine drains, nothing more gets in
        for i, stream in enumerate(slots):
            if not stream.thread.is_alive():
                slots[i] = stream_completion(url, body(model, LENGTHS[i]))
                streams.append(slots[i])
        stopper.join(0.05)
    stopper.join()
    took = time.monotonic() - began
    if failed:
        raise failed[0]
    for stream in streams:
        stream.thread.join(60)
    return streams, took


def cut(streams: list[Stream]) -> list[str]:
    """Streams that got tokens and did not end at their length (``length`` is sent only once
    ``max_tokens`` are out; a chunk may carry several tokens when the reader lags)."""
    return [
        f"stream {i}/{len(streams)}: {s.text_chunks()} text chunks, ended {s.finish_reasons()[-1:]} {s.error}"
        for i, s in enumerate(streams)
        if s.text_chunks() and s.finish_reasons()[-1:] != ["length"]
    ]


def story(log: str) -> str:
    """What a failed drain is about: the launcher's lines, vLLM's shutdown and errors."""
    wanted = re.compile(r"spark-serve:|\[shutdown\]|Error|Traceback|killed|signal", re.I)
    return "\n".join([x for x in log.splitlines() if wanted.search(x)][-60:])


def assert_drained(streams: list[Stream], log: str, keep: Path) -> None:
    """Some stream was in flight when SIGTERM landed (vLLM's line), and none was cut; the
    container's whole log is kept in ``keep`` for a failure's reader."""
    (keep / "vllm.log").write_text(log)
    assert DRAINING.search(log), story(log)
    assert not cut(streams), "\n".join(cut(streams)) + "\n" + story(log)
