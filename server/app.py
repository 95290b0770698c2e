"""The sidecar's FastAPI app: liveness, readiness, status and one scrape target."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from entrypoint import __version__

from .collectors import GpuCollector, ScrapeCollector, SidecarCollector
from .fleet import Families, Fleet, merged, parse_page
from .gpu import Nvml
from .monitor import Monitor
from .page import Snapshot, UpstreamPage
from .settings import SidecarSettings

OUTBOUND_CONNECTIONS = 8  # to vLLM: the monitor's poll and the shared scrape (generations have their own)


def checks_document(monitor: Monitor) -> dict[str, Any]:
    """Warm-up, idle probe and heals, with the settings that drive them."""
    settings = monitor.settings
    document = monitor.checks.to_json()
    document["warmup"] = {
        "enabled": settings.warmup,
        "timeout_s": settings.warmup_timeout,
        "last": document.pop("warmup"),
    }
    document["probe"].update(interval_s=settings.probe_interval, timeout_s=settings.probe_timeout)
    document["hung"] = monitor.hung()
    document["heal"] = {
        **monitor.healer.to_json(),
        "after": settings.heal_after,
        "backoff_s": settings.heal_backoff_s,
    }
    return document


def status_document(monitor: Monitor) -> dict[str, Any]:
    state = monitor.state or {}
    verdict = monitor.verdict
    return {
        "phase": verdict.phase,
        "ready": verdict.ready,
        "reason": verdict.reason,
        "profile": state.get("profile"),
        "variant": state.get("variant"),
        "repo": state.get("repo"),
        "revision": state.get("revision"),
        "model_path": state.get("model_path"),
        "served_model_name": state.get("served_model_name"),
        "argv": state.get("argv"),
        "quantization": state.get("quantization"),
        "download": state.get("download"),
        "waiting": state.get("waiting"),
        "memory": state.get("memory"),
        "version": __version__,
        "vllm_version": monitor.vllm_version,
        "time_to_ready_seconds": monitor.time_to_ready(),
        "checks": checks_document(monitor),
        "last_error": state.get("error") or monitor.view.error,
        "cluster": monitor.cluster,
        "updated_at": state.get("updated_at"),
    }


def metrics_page(monitor: Monitor, snapshot: Snapshot) -> bytes:
    """vLLM's page passed through, then the sidecar's own series rendered now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(monitor))
    registry.register(GpuCollector(lambda: monitor.gpus.latest))
    age = time.monotonic() - snapshot.at
    registry.register(ScrapeCollector(snapshot.text is not None, snapshot.duration, age))
    upstream = snapshot.text or b""
    if upstream and not upstream.endswith(b"\n"):
        upstream += b"\n"
    return upstream + generate_latest(registry)


def fleet_status(fleet: Fleet) -> dict[str, Any]:
    """MODELS: the set's verdict, then each model's own status."""
    verdict = fleet.verdict()
    return {
        "phase": verdict.phase,
        "ready": verdict.ready,
        "reason": verdict.reason,
        "version": __version__,
        "router_port": (fleet.doc or {}).get("router_port"),
        "models": {name: status_document(m.monitor) for name, m in fleet.members.items()},
    }


async def fleet_metrics(fleet: Fleet, max_age: float) -> bytes:
    """MODELS: every engine's page as one (model_name on every series), then the sidecar's
    own series labelled with the model the same way."""
    members = list(fleet.members.values())
    snapshots = await asyncio.gather(*(m.page.for_scrape(max_age=max_age) for m in members))
    vllm = merged(((m.name, parse_page(s.text)) for m, s in zip(members, snapshots, strict=True)),
                  "model_name", only_missing=True)  # fmt: skip
    now = time.monotonic()
    own = merged(
        (
            (m.name, [*SidecarCollector(m.monitor).collect(),
                      *ScrapeCollector(s.text is not None, s.duration, now - s.at).collect()])
            for m, s in zip(members, snapshots, strict=True)
        ),
        "model_name",  # vLLM's label: one selector for both (the dashboard's $model)
        only_missing=False,
    )  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(vllm + own))
    registry.register(GpuCollector(lambda: fleet.gpus.latest))
    return generate_latest(registry)


def create_app(settings: SidecarSettings, nvml: Nvml | None = None) -> FastAPI:
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=OUTBOUND_CONNECTIONS, max_keepalive_connections=8)
        own = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(limits=limits) as client, httpx.AsyncClient(limits=own) as probes:
            page = UpstreamPage(client, settings.vllm_url, settings.scrape_timeout)
            monitor = Monitor(
                settings, client, nvml=nvml, probes=probes, page=page, paused=lambda: holder["fleet"].active
            )
            fleet = Fleet(settings, client, probes, monitor.gpus)  # the device sampled once
            holder["monitor"], holder["page"], holder["fleet"] = monitor, page, fleet
            tasks = [asyncio.create_task(monitor.run()), asyncio.create_task(fleet.run())]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await page.close()

    app = FastAPI(title="spark-serve sidecar", version=__version__, lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        fleet: Fleet = holder["fleet"]
        verdict = fleet.verdict() if fleet.active else holder["monitor"].verdict
        body = {"ready": verdict.ready, "phase": verdict.phase, "reason": verdict.reason}
        return JSONResponse(body, status_code=200 if verdict.ready else 503)

    @app.get("/health/engine")
    async def engine() -> JSONResponse:
        """503 while the engine is hung: a Kubernetes liveness probe for the engine container."""
        fleet: Fleet = holder["fleet"]
        if fleet.active:  # one hung model is that model's own heal: the others are not ended
            stuck = fleet.hung()
            reasons = "; ".join(f"{name}: {why}" for name, why in stuck.items())
            return JSONResponse(
                {"hung": bool(stuck), "reason": reasons or "not hung", "models": stuck},
                status_code=503 if stuck else 200,
            )
        hung = holder["monitor"].hung()
        body = {"hung": hung is not None, "reason": hung or "not hung"}
        return JSONResponse(body, status_code=503 if hung else 200)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        fleet: Fleet = holder["fleet"]
        return fleet_status(fleet) if fleet.active else status_document(holder["monitor"])

    @app.get("/metrics")
    async def metrics() -> Response:
        monitor: Monitor = holder["monitor"]
        fleet: Fleet = holder["fleet"]
        if fleet.active:
            page = await fleet_metrics(fleet, max(3 * settings.poll_interval, 2.0))
            return Response(page, media_type=CONTENT_TYPE_LATEST)
        snapshot = await holder["page"].for_scrape(max_age=max(3 * settings.poll_interval, 2.0))
        return Response(metrics_page(monitor, snapshot), media_type=CONTENT_TYPE_LATEST)

    return app
