"""What "ready" means (pure): the launcher is serving, every node of a cluster
is in, vLLM's /health is 200, the served model is listed, a warm-up generation
returned, and the last warm-up, idle probe or confirmation (if any failed since)
answered. Frozen token counters alone never make an engine unready: they start
a confirmation (:mod:`server.checks`), whose answer decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from entrypoint.state import WAITING_PHASES

from .checks import CheckView

WARM = CheckView(True, "", None)


@dataclass(frozen=True)
class EngineView:
    """What the monitor last saw of the engine."""

    health_ok: bool
    models: tuple[str, ...] | None  # None: /v1/models did not answer
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    ready: bool
    phase: str
    reason: str


def cluster_gap(cluster: dict[str, Any] | None) -> str | None:
    """Why a cluster is not whole (None when there is no cluster or every node is in)."""
    if not cluster:
        return None
    expected, joined = int(cluster.get("expected") or 1), int(cluster.get("joined") or 0)
    if cluster.get("error"):
        return f"cluster: {cluster['error']}"
    if joined < expected:
        return f"cluster: {joined} of {expected} nodes joined"
    return None


def decide(
    state: dict[str, Any] | None,
    view: EngineView,
    checks: CheckView = WARM,
    cluster: dict[str, Any] | None = None,
) -> Verdict:
    phase = str(state.get("phase", "pending")) if state else "pending"
    if phase == "failed":
        return Verdict(False, "failed", str(state.get("error") if state else "") or "launcher failed")
    if phase in ("pending", "downloading", "verifying"):
        return Verdict(False, phase, f"launcher is {phase}")
    if phase in WAITING_PHASES:
        waiting = state.get("waiting") if state else None
        reason = str(waiting.get("reason")) if isinstance(waiting, dict) else ""
        return Verdict(False, phase, f"launcher is {phase}" + (f": {reason}" if reason else ""))
    gap = cluster_gap(cluster)
    if gap:
        return Verdict(False, phase, gap)
    if not view.health_ok:
        reason = f"vLLM /health is not 200 ({view.error})" if view.error else "vLLM /health is not 200"
        return Verdict(False, "starting", reason)
    served = str(state.get("served_model_name", "")) if state else ""
    if view.models is None:
        return Verdict(False, "starting", "vLLM /v1/models did not answer")
    if served and served not in view.models:
        return Verdict(False, "starting", f"served model '{served}' is not listed by /v1/models")
    if not checks.warm:
        return Verdict(False, "warming-up", checks.failure or checks.waiting)
    if checks.failure:
        return Verdict(False, "serving", checks.failure)
    return Verdict(True, "serving", "ready")
