"""MODELS: one monitor per engine of the set, read from the launcher's ``stack.json``.

Each engine gets the one-model :class:`~server.monitor.Monitor` with its own state
folder and URL (the sidecar's ``VLLM_URL`` host, the engine's port), so its warm-up,
idle probe, heal and ready mark are its own: one hung model is healed without
touching the others. Ready means every model is ready. The scrape merges the
engines' pages into one: each family once, vLLM's ``model_name`` label on every
series (added where vLLM leaves it out, as on its process series), and the
sidecar's own series labelled with the same ``model_name``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from entrypoint.state import STACK_FILE, read_document

from .gpu import GpuSampler
from .monitor import Monitor
from .page import UpstreamPage
from .readiness import Verdict
from .settings import SidecarSettings


def engine_url(vllm_url: str, port: int) -> str:
    """The sidecar's VLLM_URL host with an engine's port."""
    parts = urlsplit(vllm_url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme or "http", f"{host}:{port}", "", "", ""))


def joint_verdict(verdicts: dict[str, Verdict]) -> Verdict:
    """Ready when every model is; else the first model that is not, by name."""
    waiting = [(name, v) for name, v in verdicts.items() if not v.ready]
    if not verdicts:
        return Verdict(False, "pending", "no engine of the set is known yet")
    if not waiting:
        return Verdict(True, "ready", f"every model is ready ({', '.join(verdicts)})")
    name, first = waiting[0]
    others = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
    return Verdict(False, first.phase, f"{name}: {first.reason}{others}")


def labelled(families: Iterable[Metric], label: str, value: str, only_missing: bool) -> Iterator[Metric]:
    """Each family with ``label=value`` on its samples (only where absent with ``only_missing``)."""
    for family in families:
        samples = []
        for s in family.samples:
            if only_missing and label in s.labels:
                samples.append(s)
            else:
                samples.append(s._replace(labels={**s.labels, label: value}))
        family.samples = samples
        yield family


def merged(pages: Iterable[tuple[str, Iterable[Metric]]], label: str, only_missing: bool) -> list[Metric]:
    """Families of several sources as one page: each family once, its samples labelled."""
    out: dict[str, Metric] = {}
    for value, families in pages:
        for family in labelled(families, label, value, only_missing):
            kept = out.get(family.name)
            if kept is None:
                out[family.name] = family
            elif kept.type == family.type:
                kept.samples.extend(family.samples)
    return list(out.values())


def parse_page(text: bytes | None) -> list[Metric]:
    if not text:
        return []
    try:
        return list(text_string_to_metric_families(text.decode("utf-8", "replace")))
    except ValueError:  # a page cut short: its families are left out, not the scrape
        return []


class Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


@dataclasses.dataclass
class Member:
    name: str
    monitor: Monitor
    page: UpstreamPage
    task: asyncio.Task[None]


class Fleet:
    """The set's monitors, kept equal to ``stack.json`` (none: one model, the app's own)."""

    def __init__(
        self,
        settings: SidecarSettings,
        client: httpx.AsyncClient,
        probes: httpx.AsyncClient,
        gpus: GpuSampler,
    ) -> None:
        """``gpus``: the sidecar's one sampler of the device, shared by every engine's monitor."""
        self.settings, self.client, self.probes, self.gpus = settings, client, probes, gpus
        self.members: dict[str, Member] = {}
        self.doc: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return bool(self.members)

    def _settings(self, engine: dict[str, Any]) -> SidecarSettings:
        url = engine_url(self.settings.vllm_url, int(engine["port"]))
        return dataclasses.replace(self.settings, vllm_url=url, state_dir=str(engine["state_dir"]))

    async def _close(self) -> None:
        for member in self.members.values():
            member.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.task
            await member.page.close()
        self.members = {}

    async def refresh(self) -> None:
        """Follow ``stack.json``: a new set (another launch) gets new monitors."""
        doc = read_document(self.settings.state_dir, STACK_FILE)
        doc = doc if isinstance(doc, dict) and isinstance(doc.get("engines"), list) else None
        if doc == self.doc:
            return
        await self._close()
        self.doc = doc
        for engine in (doc or {}).get("engines", []):
            settings = self._settings(engine)
            page = UpstreamPage(self.client, settings.vllm_url, settings.scrape_timeout)
            monitor = Monitor(settings, self.client, probes=self.probes, page=page, gpus=self.gpus)
            name = str(engine["name"])
            self.members[name] = Member(name, monitor, page, asyncio.create_task(monitor.run()))

    async def run(self) -> None:
        try:
            while True:
                await self.refresh()
                await asyncio.sleep(max(self.settings.poll_interval, 1.0))
        finally:
            await self._close()

    def verdict(self) -> Verdict:
        return joint_verdict({name: m.monitor.verdict for name, m in self.members.items()})

    def hung(self) -> dict[str, str]:
        return {name: why for name, m in self.members.items() if (why := m.monitor.hung()) is not None}
