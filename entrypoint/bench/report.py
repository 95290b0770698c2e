"""Rows of a benchmark (pure): llama-benchy's results, the time window of each row
from its progress events, the metric samples inside that window, and the
planner's decode ceiling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any

from ..plan.memory import ceiling_at
from .sampler import Sample

Key = tuple[int, int, int, int]  # prompt, response, depth, concurrency
_SIZES = ("prompt_size", "response_size", "context_size", "concurrency")


@dataclass(frozen=True)
class Row:
    test: str  # llama-benchy's name, e.g. "tg128 @ d4096 (c2)"
    kind: str  # "pp" or "tg"
    pp: int
    tg: int
    depth: int
    concurrency: int
    tokens_per_s: float  # mean over runs; aggregate over concurrent requests
    tokens_per_s_std: float
    tokens_per_s_request: float | None
    peak_tokens_per_s: float | None
    ttfr_ms: float | None
    window: tuple[float, float] | None  # wall clock of the row's requests
    power_watts_mean: float | None = None
    power_watts_peak: float | None = None
    temperature_celsius_mean: float | None = None
    temperature_celsius_peak: float | None = None
    tokens_per_s_per_watt: float | None = None
    ceiling_tokens_per_s: float | None = None  # decode rows: the planner's bandwidth limit
    of_ceiling: float | None = None
    spec_acceptance: float | None = None  # accepted ÷ drafted tokens in the window
    kv_usage_peak: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def windows(events: Iterable[dict[str, Any]]) -> dict[Key, tuple[float, float]]:
    """Each row's first request start and last request end, from llama-benchy's progress events."""
    keys: dict[Any, Key] = {}
    spans: dict[Key, list[float]] = {}
    for event in events:
        if event.get("type") == "request_start":
            key = (
                int(event["prompt_size"]),
                int(event["response_size"]),
                int(event["context_size"]),
                int(event["concurrency"]),
            )
            keys[event["request_id"]] = key
            spans.setdefault(key, []).append(float(event["ts"]))
        elif event.get("type") == "request_end" and event.get("request_id") in keys:
            spans[keys[event["request_id"]]].append(float(event["ts"]))
    return {key: (min(ts), max(ts)) for key, ts in spans.items()}


def _values(samples: Sequence[Sample], name: str) -> list[float]:
    return [v for s in samples if (v := getattr(s, name)) is not None]


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _acceptance(before: Sample | None, inside: Sequence[Sample]) -> float | None:
    points = [s for s in ([before] if before else []) + list(inside) if s.draft_tokens is not None]
    if len(points) < 2:
        return None
    drafted = (points[-1].draft_tokens or 0) - (points[0].draft_tokens or 0)
    accepted = (points[-1].accepted_tokens or 0) - (points[0].accepted_tokens or 0)
    return accepted / drafted if drafted > 0 else None


def tokens_per_step(memory: dict[str, Any], acceptance: float | None) -> float:
    """Tokens one decode step yields per sequence: 1, and with MTP one more per draft
    token times the measured acceptance (unmeasured: the draft is not counted, and a
    row above its ceiling says so)."""
    drafts = int(memory.get("speculative_tokens") or 0)
    return 1.0 + drafts * acceptance if drafts and acceptance is not None else 1.0


def measure(row: Row, samples: Sequence[Sample], memory: dict[str, Any] | None) -> Row:
    """The row with what the samples inside its window, and the memory plan, say."""
    values: dict[str, Any] = {}
    if row.window is not None:
        start, end = row.window
        inside = [s for s in samples if start <= s.at <= end]
        before = next((s for s in reversed(samples) if s.at < start), None)
        power, temp = _values(inside, "power_watts"), _values(inside, "temperature_celsius")
        kv = _values(inside, "kv_usage")
        values = {
            "power_watts_mean": _mean(power),
            "power_watts_peak": max(power) if power else None,
            "temperature_celsius_mean": _mean(temp),
            "temperature_celsius_peak": max(temp) if temp else None,
            "spec_acceptance": _acceptance(before, inside),
            "kv_usage_peak": max(kv) if kv else None,
        }
        if values["power_watts_mean"]:
            values["tokens_per_s_per_watt"] = row.tokens_per_s / values["power_watts_mean"]
    if row.kind == "tg" and memory is not None:
        context = row.depth + row.pp + row.tg // 2  # the middle of the generation
        ceiling = ceiling_at(
            memory.get("bandwidth_bytes_per_s"),
            int(memory.get("decode_read_bytes") or 0),
            int(memory.get("kv_bytes_per_token") or 0),
            context,
            row.concurrency,
            int(memory.get("decode_expert_bytes") or 0),
            float(memory.get("expert_share") or 0.0),
            tokens_per_step(memory, values.get("spec_acceptance")),
        )
        if ceiling:
            values["ceiling_tokens_per_s"] = ceiling
            values["of_ceiling"] = row.tokens_per_s / ceiling
    return Row(**{**asdict(row), **values})


def _metric(run: dict[str, Any], name: str) -> tuple[float, float] | None:
    metric = run.get(name)
    return (float(metric["mean"]), float(metric["std"])) if isinstance(metric, dict) else None


def rows_from(benchy: dict[str, Any], spans: dict[Key, tuple[float, float]]) -> list[Row]:
    """llama-benchy's JSON result as rows, in its order (prompt processing, then generation)."""
    found: list[Row] = []
    multi = int(benchy.get("max_concurrency") or 1) > 1
    for run in benchy.get("benchmarks", []):
        if run.get("is_context_prefill_phase"):
            continue
        pp, tg, depth, c = (int(run[k]) for k in _SIZES)
        suffix = (f" @ d{depth}" if depth else "") + (f" (c{c})" if multi else "")
        window = spans.get((pp, tg, depth, c))
        for kind, total, request, peak in (
            ("pp", "pp_throughput", "pp_req_throughput", None),
            ("tg", "tg_throughput", "tg_req_throughput", "peak_throughput"),
        ):
            value = _metric(run, total)
            if value is None:
                continue
            req, top, ttfr = _metric(run, request), _metric(run, peak) if peak else None, _metric(run, "ttfr")
            found.append(
                Row(
                    test=f"{kind}{pp if kind == 'pp' else tg}{suffix}",
                    kind=kind,
                    pp=pp,
                    tg=tg,
                    depth=depth,
                    concurrency=c,
                    tokens_per_s=value[0],
                    tokens_per_s_std=value[1],
                    tokens_per_s_request=req[0] if req else None,
                    peak_tokens_per_s=top[0] if top else None,
                    ttfr_ms=ttfr[0] if ttfr and kind == "pp" else None,
                    window=window,
                )
            )
    return found
