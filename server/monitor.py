"""Background watch on the launcher's state and the engine.

Polls every ``poll_interval`` seconds so that readiness answers from memory
(cheap under load) and time-to-ready is measured when it happens, not when
someone asks. Each poll also drives the checks: it sends the warm-up once the
engine lists its model, an idle probe when nothing completed for
``PROBE_INTERVAL``, a confirmation while token counters are frozen with
requests running, and hands a hung engine to the healer with the evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from entrypoint.errors import StateUnwritableError
from entrypoint.state import CLUSTER_FILE, READY_FILE, read_document, read_state, write_document

from .checks import CheckPolicy, Checks, Load
from .generation import WARMUP, Generator, Outcome, warmup_tokens
from .gpu import GpuSampler, Nvml, available_memory
from .heal import Healer
from .page import UpstreamPage
from .readiness import EngineView, Verdict, decide
from .settings import SidecarSettings

_TOKEN_SAMPLES = frozenset({"vllm:generation_tokens_total", "vllm:prompt_tokens_total"})
# Finish reasons that say nothing about the engine answering: a client that gave
# up (a timed-out probe among them) and an engine error.
_NOT_ANSWERED = frozenset({"abort", "error"})


@dataclass(frozen=True)
class EngineCounters:
    running: float  # vllm:num_requests_running
    waiting: float  # vllm:num_requests_waiting
    tokens: float  # prompt + generation tokens so far
    finished: float  # vllm:request_success_total, requests that got their answer
    kv_usage: float | None = None  # vllm:kv_cache_usage_perc, the fullest engine (0-1)


_WANTED = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    *_TOKEN_SAMPLES,
    "vllm:request_success_total",
    "vllm:kv_cache_usage_perc",
)


def engine_counters(metrics_text: str) -> EngineCounters:
    """What the monitor needs from vLLM's /metrics, summed over engines and labels.

    Only the sample lines of these few series are parsed (as untyped samples):
    the page is ~50 KB of histograms, and this runs every poll beside the engine."""
    wanted = "\n".join(line for line in metrics_text.splitlines() if line.startswith(_WANTED))
    running = waiting = tokens = finished = 0.0
    kv: float | None = None
    for family in text_string_to_metric_families(wanted):
        for sample in family.samples:
            if sample.name == "vllm:num_requests_running":
                running += sample.value
            elif sample.name == "vllm:num_requests_waiting":
                waiting += sample.value
            elif sample.name in _TOKEN_SAMPLES:
                tokens += sample.value
            elif sample.name == "vllm:kv_cache_usage_perc":
                kv = sample.value if kv is None else max(kv, sample.value)
            elif (
                sample.name == "vllm:request_success_total"
                and sample.labels.get("finished_reason") not in _NOT_ANSWERED
            ):
                finished += sample.value
    return EngineCounters(running, waiting, tokens, finished, kv)


class Monitor:
    def __init__(
        self,
        settings: SidecarSettings,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        nvml: Nvml | None = None,
        probes: httpx.AsyncClient | None = None,
        page: UpstreamPage | None = None,
        memory_available: Callable[[], int | None] = available_memory,
        gpus: GpuSampler | None = None,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        """``gpus``: another monitor's sampler, which that monitor runs (MODELS: one per
        device, not per engine); ``paused``: skip the poll while it is true (MODELS: the
        set's monitors watch the engines, not this one)."""
        self.settings, self.client, self.clock = settings, client, clock
        self.paused = paused
        self.memory_available = memory_available
        self.state: dict[str, Any] | None = None
        self.cluster: dict[str, Any] | None = None  # the head's membership (cluster.json), if a cluster
        self.view = EngineView(False, None, "not checked yet")
        self.verdict = Verdict(False, "pending", "not checked yet")
        self.vllm_version: str | None = None
        self.ready_at: float | None = None
        self.counters: EngineCounters | None = None
        self._tokens: float | None = None
        self._marked: object = None  # the start_id last recorded as ready
        self._moved_at = clock()
        policy = CheckPolicy(
            settings.warmup, settings.probe_interval, settings.heal_after, settings.ready_window
        )
        self.checks = Checks(policy, clock())
        # The sidecar's own generations have their own connections: scrapes never starve them.
        self.generator = Generator(probes or client, settings.vllm_url, settings.api_key, clock)
        self._own_gpus = gpus is None
        self.gpus = gpus or GpuSampler(nvml or Nvml(), max(settings.poll_interval, 1.0), clock)
        self.load: Load | None = None
        self.page = page or UpstreamPage(client, settings.vllm_url, settings.scrape_timeout)
        self.healer = Healer(settings.heal, settings.heal_backoff_s, settings.state_dir, clock)
        self._sending: asyncio.Task[None] | None = None
        self._born = clock()
        if not settings.launcher:
            self.healer.blocked = "LAUNCHER=0: no PID to end; the engine's own liveness probe restarts it"

    def _read_state(self) -> dict[str, Any] | None:
        """The launcher's state; with LAUNCHER=0 (an engine started by something else,
        e.g. a Helm chart) one start that began with this sidecar."""
        if self.settings.launcher:
            return read_state(Path(self.settings.state_dir))
        return {"phase": "starting", "start_id": "external", "started_at": self._born}

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(self.settings.vllm_url + path, timeout=2.0, **kwargs)

    async def _look(self) -> EngineView:
        self.counters, self.load = None, None
        try:
            health = await self._get("/health")
        except httpx.HTTPError as err:
            self.page.forget()
            return EngineView(False, None, type(err).__name__)
        if health.status_code != 200:
            self.page.forget()
            return EngineView(False, None, f"HTTP {health.status_code}")
        models: tuple[str, ...] | None = None
        try:
            listed = await self._get("/v1/models", headers=self._headers())
            if listed.status_code == 200:
                models = tuple(str(m.get("id")) for m in listed.json().get("data", []))
            metrics = await self.page.fresh()  # the same fetch the scrapes pass through
            if metrics.text is not None:
                self.counters = engine_counters(metrics.text.decode("utf-8", "replace"))
                self.load = self._load(self.counters)
            if self.vllm_version is None:
                version = await self._get("/version", headers=self._headers())
                if version.status_code == 200:
                    self.vllm_version = str(version.json().get("version"))
        except (httpx.HTTPError, ValueError) as err:
            return EngineView(True, models, type(err).__name__)
        return EngineView(True, models)

    def _load(self, counters: EngineCounters) -> Load:
        """The gauges, and how long the token counters have been frozen while requests ran."""
        now = self.clock()
        if self._tokens is None or counters.tokens != self._tokens or counters.running == 0:
            self._tokens, self._moved_at = counters.tokens, now
        limit = (self.state or {}).get("max_num_seqs")
        full = isinstance(limit, int) and counters.running >= limit
        return Load(counters.running, counters.waiting, counters.kv_usage, now - self._moved_at, full)

    def _served(self) -> str:
        served = str((self.state or {}).get("served_model_name") or "")
        return served or (self.view.models[0] if self.view.models else "")

    def _observe(self, finished_before: float | None) -> None:
        view, counters, now = self.view, self.counters, self.clock()
        served = str((self.state or {}).get("served_model_name") or "")
        listed = view.models is not None and (not served or served in view.models)
        busy = counters is not None and counters.running + counters.waiting > 0
        completed = (
            counters is not None and finished_before is not None and counters.finished != finished_before
        )
        self.checks.observe(now, up=view.health_ok and listed, busy=busy, completed=completed, load=self.load)

    async def poll_once(self) -> Verdict:
        state = self._read_state()
        if (state or {}).get("started_at") != (self.state or {}).get("started_at"):
            self.ready_at = None  # a new launch: time to ready starts again
        self.state = state
        cluster = read_document(self.settings.state_dir, CLUSTER_FILE)
        self.cluster = cluster if isinstance(cluster, dict) else None
        launched = state is not None and state.get("phase") == "starting"
        self.checks.sync((state or {}).get("start_id") if launched else None, self.clock())
        finished_before = self.counters.finished if self.counters else None
        self.view = await self._look()
        if launched:
            self._observe(finished_before)
        self.verdict = decide(self.state, self.view, self.checks.view(self.clock()), self.cluster)
        if self.verdict.ready and self.ready_at is None:
            self.ready_at = self.clock()
        if self.verdict.ready and self.settings.launcher:
            self._mark_ready()
        if launched:
            if self.settings.launcher:  # else no PID to end: the engine's own liveness probe restarts it
                self.healer.consider(self.state, self.checks.hung(), self.ready_at is not None, self.evidence)
            self._send_due()
        return self.verdict

    def hung(self) -> str | None:
        """Why the engine needs a restart (what ``/health/engine`` answers), or None."""
        launched = self.state is not None and self.state.get("phase") == "starting"
        return self.checks.hung() if launched else None

    def evidence(self) -> dict[str, Any]:
        """What the monitor saw, for the record a heal leaves before it signals."""
        now, stall = self.clock(), self.checks.stall
        start = stall.since if stall is not None else now - 2 * self.settings.probe_timeout
        return {
            "reason": self.checks.hung(),
            "at": now,
            "served_model_name": self._served(),
            "counters": None if self.counters is None else asdict(self.counters),
            "load": None if self.load is None else asdict(self.load),
            "stall": None if stall is None else stall.to_json(),
            "checks": self.checks.to_json(),
            "gpu": self.gpus.since(start),
            "argv": (self.state or {}).get("argv"),
        }

    def _send_due(self) -> None:
        kind = self.checks.due(self.clock())
        if kind is None or self.healer.busy():
            return
        self.checks.begin(kind, self.clock())
        self._sending = asyncio.create_task(self._send(kind, self.checks.key))

    async def _send(self, kind: str, key: object) -> None:
        settings = self.settings
        if kind == WARMUP:
            drafts = int((self.state or {}).get("speculative_tokens") or 0)
            tokens, timeout = warmup_tokens(drafts), settings.warmup_timeout
        else:  # a probe or a confirmation: one token
            tokens, timeout = 1, settings.probe_timeout
        outcome: Outcome = await self.generator.send(kind, self._served(), tokens, timeout)
        if self.checks.key == key:  # not a generation for a start that has since been replaced
            self.checks.finish(outcome)

    def _mark_ready(self) -> None:
        """Tell the launcher's restart back-off that this engine start reached ready."""
        start_id = (self.state or {}).get("start_id")
        if start_id is None or start_id == self._marked:
            return
        self._marked = start_id
        # MemAvailable now, against the launcher's reading at its memory guard: the engine's
        # footprint, which the next plan is calibrated by (entrypoint/plan/measured.py).
        mark = {"start_id": start_id, "ready_at": self.clock(), "available_at_ready": self.memory_available()}
        with contextlib.suppress(StateUnwritableError):  # a read-only STATE_DIR: no back-off reset
            write_document(self.settings.state_dir, READY_FILE, mark)

    def time_to_ready(self) -> float | None:
        started = (self.state or {}).get("started_at")
        if self.ready_at is None or not isinstance(started, (int, float)):
            return None
        return max(self.ready_at - float(started), 0.0)

    async def run(self) -> None:
        sampler = asyncio.create_task(self.gpus.run()) if self._own_gpus else None
        try:
            while True:
                if not self.paused():
                    await self.poll_once()
                await asyncio.sleep(self.settings.poll_interval)
        finally:
            if sampler is not None:
                sampler.cancel()
            if self._sending is not None:
                self._sending.cancel()
            await self.healer.close()
