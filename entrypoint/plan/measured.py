"""Calibration from real starts (pure): what an engine start measured, keyed by what
it ran, and how the next plan uses it.

A start is keyed by the model (repo@revision, or its path), the hardware entry, the
installed vLLM version and the engine flags less the two the planner derives from
its own figures (``--kv-cache-memory-bytes``, ``--gpu-memory-utilization``), so a
plan that changes them with a measurement still finds it.

What a start measures (:func:`measure`):
- vLLM's own log lines (:mod:`entrypoint.engine.logfigures`): weights loaded, CUDA
  graphs, KV tokens and maximum concurrency; a refused start's free memory at its
  check, which less MemAvailable at the memory guard is vLLM's pre-check use;
- on unified memory and the host, MemAvailable at the guard less MemAvailable when
  the sidecar first saw the engine ready: the engine's whole footprint, which less
  the KV cache and the weights is what vLLM holds beyond them (the allowance's
  part). Dedicated GPUs have no such reading here (NVML's per-process figures are not
  read), so only vLLM's own lines count there.

The next plan with the same key takes the measured non-KV memory and pre-check use,
each with :data:`MARGIN` more (at least :data:`MARGIN_MIN_BYTES`), in place of the
hardware table's figures, and says so (source ``measured`` and the date).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..meta import EngineFigures

MARGIN = 0.10  # above a measured figure, for what one start cannot show
MARGIN_MIN_BYTES = 256 << 20
OFF_BY = 0.10  # planned and measured further apart than this: a warning
PLANNER_FLAGS = ("--kv-cache-memory-bytes", "--gpu-memory-utilization")


def calibration_key(model: str, hardware: str, vllm: str, flags: list[str]) -> str:
    """The key of a start: model, hardware, vLLM version, engine flags less the planner's."""
    kept: list[str] = []
    skip = False
    for word in flags:
        if skip:
            skip = False
        elif word in PLANNER_FLAGS:
            skip = True
        else:
            kept.append(word)
    text = json.dumps([model, hardware, vllm, kept], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Measured:
    """One start's measurement, with what was planned for it."""

    key: str
    start_id: str
    at: float
    hardware: str
    memory_kind: str
    planned: dict[str, Any]  # the MemoryPlan's figures that start ran with
    weights_bytes: int | None = None  # vLLM's "Model loading took"
    graphs_bytes: int | None = None
    kv_tokens: int | None = None
    max_concurrency: float | None = None
    footprint_bytes: int | None = None  # MemAvailable at the guard − at ready
    non_kv_bytes: int | None = None  # footprint − KV cache − weights
    precheck_bytes: int | None = None  # MemAvailable at the guard − vLLM's free at its check

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Measured | None:
        try:
            return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except TypeError:
            return None  # a record from another version: not used

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.at))


def measure(start: dict[str, Any], ready: dict[str, Any] | None, figures: EngineFigures) -> Measured | None:
    """What the start the launcher state ``start`` describes measured: ``ready`` is the
    sidecar's mark of its first ready (None: never ready), ``figures`` its log lines."""
    calib = start.get("calibration")
    if not isinstance(calib, dict) or not isinstance(start.get("start_id"), str):
        return None
    planned: dict[str, Any] = calib.get("planned") or {}
    available = calib.get("available_at_start")
    at_ready = (
        ready.get("available_at_ready") if ready and ready.get("start_id") == start["start_id"] else None
    )
    footprint = non_kv = precheck = None
    kind = str(planned.get("memory_kind") or "")
    if isinstance(available, int) and isinstance(at_ready, int) and kind in ("unified", "host"):
        footprint = available - at_ready
        weights = figures.weights_bytes if figures.weights_bytes is not None else planned.get("weights_bytes")
        if isinstance(weights, int) and isinstance(planned.get("kv_cache_bytes"), int):
            non_kv = max(footprint - planned["kv_cache_bytes"] - weights, 0)
    if isinstance(available, int) and figures.free_at_check_bytes is not None:
        precheck = max(available - figures.free_at_check_bytes, 0)
    if not figures.said_anything and footprint is None:
        return None
    when = ready.get("ready_at") if ready and at_ready is not None else start.get("started_at")
    return Measured(
        key=str(calib.get("key")),
        start_id=start["start_id"],
        at=float(when or 0.0),
        hardware=str(calib.get("hardware") or ""),
        memory_kind=kind,
        planned=planned,
        weights_bytes=figures.weights_bytes,
        graphs_bytes=figures.graphs_bytes,
        kv_tokens=figures.kv_tokens,
        max_concurrency=figures.max_concurrency,
        footprint_bytes=footprint,
        non_kv_bytes=non_kv,
        precheck_bytes=precheck,
    )


@dataclass(frozen=True)
class Calibration:
    """The measurements a plan may use: the installed vLLM's version and, by key, the
    newest measurement of each of non-KV memory and pre-check use."""

    vllm: str
    entries: dict[str, list[Measured]] = field(default_factory=dict)

    def latest(self, key: str, figure: str) -> Measured | None:
        found = [m for m in self.entries.get(key, []) if getattr(m, figure) is not None]
        return max(found, key=lambda m: m.at) if found else None

    def newest(self, key: str) -> Measured | None:
        found = self.entries.get(key, [])
        return max(found, key=lambda m: m.at) if found else None


def with_margin(measured: int) -> int:
    return measured + max(int(measured * MARGIN), MARGIN_MIN_BYTES)


@dataclass(frozen=True)
class Applied:
    """The measured figures a plan used, with where they came from."""

    non_kv_bytes: int | None = None
    precheck_bytes: int | None = None
    source: str = ""


def applied(calibration: Calibration | None, key: str) -> Applied:
    if calibration is None:
        return Applied()
    non_kv, precheck = calibration.latest(key, "non_kv_bytes"), calibration.latest(key, "precheck_bytes")
    used = [m for m in (non_kv, precheck) if m is not None]
    if not used:
        return Applied()
    source = "measured " + ", ".join(sorted({f"{m.date} (start {m.start_id})" for m in used}))
    return Applied(
        non_kv_bytes=with_margin(non_kv.non_kv_bytes) if non_kv and non_kv.non_kv_bytes is not None else None,
        precheck_bytes=(
            with_margin(precheck.precheck_bytes) if precheck and precheck.precheck_bytes is not None else None
        ),
        source=source,
    )


@dataclass(frozen=True)
class Comparison:
    figure: str
    planned: float
    measured: float
    unit: str  # "bytes", "tokens", "x"

    @property
    def off(self) -> float:
        return abs(self.measured - self.planned) / self.planned if self.planned else 0.0

    @property
    def warn(self) -> bool:
        return self.off > OFF_BY


def compare(m: Measured) -> list[Comparison]:
    """Planned against measured for one start, figure by figure."""
    p = m.planned
    pairs: list[tuple[str, Any, Any, str]] = [
        ("weights", p.get("weights_bytes"), m.weights_bytes, "bytes"),
        ("KV cache tokens", p.get("kv_cache_tokens"), m.kv_tokens, "tokens"),
        ("maximum concurrency", p.get("max_concurrent_sequences"), m.max_concurrency, "x"),
        ("memory beyond weights and KV", p.get("allowance_bytes"), m.non_kv_bytes, "bytes"),
        ("vLLM's use before its start check", p.get("precheck_bytes"), m.precheck_bytes, "bytes"),
    ]
    return [
        Comparison(name, float(planned), float(measured), unit)
        for name, planned, measured, unit in pairs
        if isinstance(planned, (int, float)) and isinstance(measured, (int, float))
    ]
