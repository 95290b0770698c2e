"""vLLM's /metrics page, fetched once for everyone who needs it.

The monitor reads it every poll (the counters and gauges it judges by) and every
scrape passes it through. One fetch is in flight at a time and everyone waiting
shares it. Scrapes within :data:`SHARE_S` of the last page share that page (32
scrapers cost vLLM one render, not 32); an older one waits for a fetch at most
:data:`WAIT_S` when the page it has is younger than ``max_age``, and is then
answered with that page: one slow render on vLLM's side never makes every
concurrent scrape as slow as it is.
The age of the page served is its own series (``sparkserve_vllm_page_age_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

SHARE_S = 1.0  # scrapes within this age of the last page share it
WAIT_S = 0.25  # what a scrape waits for a fresh page before it takes the last one


@dataclass(frozen=True)
class Snapshot:
    text: bytes | None  # None: vLLM's /metrics did not answer 200
    at: float  # monotonic time the fetch began
    duration: float  # seconds the fetch took


class UpstreamPage:
    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.url, self.timeout, self.clock = client, url + "/metrics", timeout, clock
        self.latest: Snapshot | None = None
        self._inflight: asyncio.Task[Snapshot] | None = None
        self._epoch = 0  # bumped by forget(): a fetch begun before it never becomes the latest

    async def _fetch(self) -> Snapshot:
        start, epoch = self.clock(), self._epoch
        try:
            response = await self.client.get(self.url, timeout=self.timeout)
            text = response.content if response.status_code == 200 else None
        except httpx.HTTPError:
            text = None
        snapshot = Snapshot(text, start, self.clock() - start)
        if epoch == self._epoch:
            self.latest = snapshot
        return snapshot

    def forget(self) -> None:
        """The engine stopped answering: no scrape may be answered with its last page."""
        self.latest, self._epoch = None, self._epoch + 1

    def _task(self) -> asyncio.Task[Snapshot]:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._fetch())
        return self._inflight

    async def fresh(self) -> Snapshot:
        """A page fetched now (or joined while in flight): what the monitor judges by."""
        return await asyncio.shield(self._task())

    async def for_scrape(self, max_age: float) -> Snapshot:
        """The last page while it is younger than :data:`SHARE_S` (refreshed behind it);
        else a fresh page, or the last one when the fetch is slow and the last page is
        younger than ``max_age`` seconds."""
        last = self.latest
        age = math.inf if last is None else self.clock() - last.at
        if last is not None and age <= SHARE_S:
            if age > SHARE_S / 2:
                self._task()  # refreshed behind this answer, for the next scrape
            return last
        task = self._task()
        if last is None or age > max_age:
            return await asyncio.shield(task)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(task), WAIT_S)
        return last

    async def close(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
