"""Background watch on the launcher's state and the engine.

Polls every ``poll_interval`` seconds so that readiness answers from memory
(cheap under load) and time-to-ready is measured when it happens, not when
someone asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from entrypoint.errors import StateUnwritableError
from entrypoint.state import READY_FILE, read_state, write_document

from .readiness import EngineView, Verdict, decide
from .settings import SidecarSettings

_TOKEN_SAMPLES = frozenset({"vllm:generation_tokens_total", "vllm:prompt_tokens_total"})


def engine_counters(metrics_text: str) -> tuple[float, float]:
    """(requests running, prompt + generation tokens so far) from vLLM's /metrics."""
    running, tokens = 0.0, 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "vllm:num_requests_running":
                running += sample.value
            elif sample.name in _TOKEN_SAMPLES:
                tokens += sample.value
    return running, tokens


class Monitor:
    def __init__(
        self, settings: SidecarSettings, client: httpx.AsyncClient, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings, self.client, self.clock = settings, client, clock
        self.state: dict[str, Any] | None = None
        self.view = EngineView(False, None, 0.0, 0.0, "not checked yet")
        self.verdict = Verdict(False, "pending", "not checked yet")
        self.vllm_version: str | None = None
        self.ready_at: float | None = None
        self._tokens: float | None = None
        self._marked: object = None  # the start_id last recorded as ready
        self._moved_at = clock()

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(self.settings.vllm_url + path, timeout=2.0, **kwargs)

    async def _look(self) -> EngineView:
        try:
            health = await self._get("/health")
        except httpx.HTTPError as err:
            return EngineView(False, None, 0.0, 0.0, type(err).__name__)
        if health.status_code != 200:
            return EngineView(False, None, 0.0, 0.0, f"HTTP {health.status_code}")
        models: tuple[str, ...] | None = None
        running, stalled = 0.0, 0.0
        try:
            listed = await self._get("/v1/models", headers=self._headers())
            if listed.status_code == 200:
                models = tuple(str(m.get("id")) for m in listed.json().get("data", []))
            metrics = await self._get("/metrics")
            if metrics.status_code == 200:
                running, tokens = engine_counters(metrics.text)
                now = self.clock()
                if self._tokens is None or tokens != self._tokens or running == 0:
                    self._tokens, self._moved_at = tokens, now
                stalled = now - self._moved_at
            if self.vllm_version is None:
                version = await self._get("/version")
                if version.status_code == 200:
                    self.vllm_version = str(version.json().get("version"))
        except (httpx.HTTPError, ValueError) as err:
            return EngineView(True, models, running, stalled, type(err).__name__)
        return EngineView(True, models, running, stalled)

    async def poll_once(self) -> Verdict:
        state = read_state(Path(self.settings.state_dir))
        if (state or {}).get("started_at") != (self.state or {}).get("started_at"):
            self.ready_at = None  # a new launch: time to ready starts again
        self.state = state
        self.view = await self._look()
        self.verdict = decide(self.state, self.view, self.settings.ready_window)
        if self.verdict.ready and self.ready_at is None:
            self.ready_at = self.clock()
        if self.verdict.ready:
            self._mark_ready()
        return self.verdict

    def _mark_ready(self) -> None:
        """Tell the launcher's restart back-off that this engine start reached ready."""
        start_id = (self.state or {}).get("start_id")
        if start_id is None or start_id == self._marked:
            return
        self._marked = start_id
        with contextlib.suppress(StateUnwritableError):  # a read-only STATE_DIR: no back-off reset
            write_document(
                self.settings.state_dir, READY_FILE, {"start_id": start_id, "ready_at": self.clock()}
            )

    def time_to_ready(self) -> float | None:
        started = (self.state or {}).get("started_at")
        if self.ready_at is None or not isinstance(started, (int, float)):
            return None
        return max(self.ready_at - float(started), 0.0)

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.settings.poll_interval)
