"""The sidecar's own failures never count toward a heal: a real httpx client against
a real socket that accepts and never answers (a hung engine's port)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from server.generation import PROBE, Generator, Outcome


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def send(url: str, timeout: float, limits: httpx.Limits | None = None, block_s: float = 0.0) -> Outcome:
    async def scenario() -> Outcome:
        async with httpx.AsyncClient(limits=limits or httpx.Limits()) as client:
            generator = Generator(client, url, None)
            if limits is not None:  # the only pooled connection is taken by another request
                hog = asyncio.create_task(client.post(url + "/v1/completions", json={}, timeout=30))
                await asyncio.sleep(0.3)
            sent = asyncio.create_task(generator.send(PROBE, "m", 1, timeout))
            await asyncio.sleep(0.1)
            time.sleep(block_s)  # the sidecar's event loop overloaded (blocked) past the timeout
            outcome = await sent
            if limits is not None:
                hog.cancel()
            return outcome

    return asyncio.run(scenario())


def test_an_engine_that_does_not_answer_counts(silent: str) -> None:
    outcome = send(silent, 1.0)
    assert not outcome.ok and outcome.counts and outcome.error == "no answer in 1s"


def test_a_timeout_the_sidecar_itself_made_late_does_not_count(silent: str) -> None:
    outcome = send(silent, 1.0, block_s=2.5)
    assert not outcome.ok and not outcome.counts
    assert outcome.error is not None and "own event loop ran" in outcome.error


def test_no_free_connection_in_the_sidecars_pool_does_not_count(silent: str) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    outcome = send(silent, 2.0, limits=limits)
    # The pool timeout (half the probe's) ends the wait first: the engine was never asked.
    assert not outcome.ok and not outcome.counts
    assert outcome.error is not None and "could not open a connection" in outcome.error
