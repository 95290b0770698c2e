"""What a benchmark writes: the cards' Markdown table, the side-by-side comparison, the plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .report import Row

Column = tuple[str, Callable[[Row], str]]


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pair(mean: float | None, peak: float | None, digits: int = 1) -> str:
    return "" if mean is None else f"{mean:.{digits}f} / {_num(peak, digits)}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _of_ceiling(value: float | None) -> str:
    """The share of the ceiling; above 100 % the ceiling's model missed something (an
    MTP acceptance not measured, a cache hit), and the cell says so."""
    text = _percent(value)
    return f"{text} (above the ceiling)" if value is not None and value > 1 else text


def columns(rows: Sequence[Row]) -> list[Column]:
    """The cards' columns, then power, ceiling and engine columns only where a row has them."""
    chosen: list[Column] = [
        ("test", lambda r: r.test),
        ("t/s", lambda r: f"{r.tokens_per_s:.2f} ± {r.tokens_per_s_std:.2f}"),
        ("t/s (req)", lambda r: _num(r.tokens_per_s_request)),
        ("peak t/s", lambda r: _num(r.peak_tokens_per_s)),
        ("ttfr (ms)", lambda r: _num(r.ttfr_ms)),
    ]
    optional: list[tuple[str, Column]] = [
        ("power_watts_mean", ("W mean / peak", lambda r: _pair(r.power_watts_mean, r.power_watts_peak))),
        (
            "temperature_celsius_mean",
            ("°C mean / peak", lambda r: _pair(r.temperature_celsius_mean, r.temperature_celsius_peak)),
        ),
        ("tokens_per_s_per_watt", ("t/s/W", lambda r: _num(r.tokens_per_s_per_watt, 3))),
        ("ceiling_tokens_per_s", ("ceiling t/s", lambda r: _num(r.ceiling_tokens_per_s, 1))),
        ("of_ceiling", ("of ceiling", lambda r: _of_ceiling(r.of_ceiling))),
        ("spec_acceptance", ("spec accept", lambda r: _percent(r.spec_acceptance))),
        ("kv_usage_peak", ("KV peak", lambda r: _percent(r.kv_usage_peak))),
    ]
    for field, column in optional:
        if any(getattr(r, field) is not None for r in rows):
            chosen.append(column)
    return chosen


def _table(headers: list[str], cells: list[list[str]]) -> str:
    """A pipe table as llama-benchy prints its own (tabulate, installed with llama-benchy)."""
    from tabulate import tabulate

    align = ("left", *("right",) * (len(headers) - 1))
    text = tabulate(cells, headers=headers, tablefmt="pipe", colalign=align, disable_numparse=True)
    return str(text) + "\n"


def markdown(rows: Sequence[Row], title: str, facts: Sequence[str]) -> str:
    chosen = columns(rows)
    table = _table([name for name, _ in chosen], [[cell(r) for _, cell in chosen] for r in rows])
    return f"# {title}\n\n" + "".join(f"- {fact}\n" for fact in facts) + "\n" + table


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.3f}" if a and b is not None else ""


def comparison(this: dict[str, Any], other: dict[str, Any]) -> str:
    """Two results side by side: this run (B) over the other (A), row by row."""
    theirs = {r["test"]: r for r in other.get("rows", [])}
    cells = []
    for row in this.get("rows", []):
        old = theirs.get(row["test"])
        if old is None:
            continue
        a, b = old["tokens_per_s"], row["tokens_per_s"]
        aw, bw = old.get("tokens_per_s_per_watt"), row.get("tokens_per_s_per_watt")
        cells.append([row["test"], _num(a), _num(b), _ratio(a, b), _num(aw, 3), _num(bw, 3), _ratio(aw, bw)])
    headers = ["test", "A t/s", "B t/s", "B/A", "A t/s/W", "B t/s/W", "B/A t/s/W"]
    facts = [f"A: {label(other)}", f"B: {label(this)}"]
    return "# Comparison\n\n" + "".join(f"- {f}\n" for f in facts) + "\n" + _table(headers, cells)


def label(result: dict[str, Any]) -> str:
    parts = [str(result.get("profile") or result.get("served_model_name") or "?")]
    if result.get("variant"):
        parts.append(f"[{result['variant']}]")
    parts.append(f"on {result.get('hardware') or '?'}, vLLM {result.get('vllm_version') or '?'}")
    return " ".join(parts) + f" ({result.get('started_at_utc', '')})"


def plot(rows: Sequence[Row], path: Path, title: str) -> None:
    """Aggregate decode tokens/s (and tokens/s/W when measured) against concurrency, one line per depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decode = [r for r in rows if r.kind == "tg"]
    figure, left = plt.subplots(figsize=(8, 5), dpi=100)
    right = left.twinx() if any(r.tokens_per_s_per_watt for r in decode) else None
    for depth in sorted({r.depth for r in decode}):
        line = sorted((r for r in decode if r.depth == depth), key=lambda r: r.concurrency)
        xs = [r.concurrency for r in line]
        left.plot(xs, [r.tokens_per_s for r in line], marker="o", label=f"t/s @ d{depth}")
        if right is not None:
            watts = [r.tokens_per_s_per_watt or float("nan") for r in line]
            right.plot(xs, watts, marker="x", linestyle="--", label=f"t/s/W @ d{depth}")
    left.set_xlabel("concurrency")
    left.set_ylabel("aggregate decode tokens/s")
    left.set_xticks(sorted({r.concurrency for r in decode}) or [1])
    handles, labels = left.get_legend_handles_labels()
    if right is not None:
        right.set_ylabel("tokens/s per watt")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    left.legend(handles, labels, loc="best", fontsize="small")
    left.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
