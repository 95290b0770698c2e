"""Calibration from real starts, the pure part: keys, what a start measured, margins."""

from __future__ import annotations

from entrypoint.meta import EngineFigures
from entrypoint.plan.measured import Calibration, applied, calibration_key, compare, measure, with_margin

GIB = 1 << 30
FLAGS = ["--max-model-len", "4096", "--kv-cache-memory-bytes", "123", "--gpu-memory-utilization", "0.5"]


def start(**calibration: object) -> dict[str, object]:
    planned = {"memory_kind": "unified", "weights_bytes": 10 * GIB, "kv_cache_bytes": 20 * GIB,
               "kv_cache_tokens": 1000, "allowance_bytes": 6 * GIB, "precheck_bytes": 3 * GIB,
               "max_concurrent_sequences": 4}  # fmt: skip
    return {"start_id": "s1", "started_at": 1e9, "calibration": {"key": "k", "hardware": "gb10",
            "available_at_start": 100 * GIB, "planned": planned, **calibration}}  # fmt: skip


def test_the_key_leaves_out_what_the_planner_derives_from_its_own_figures() -> None:
    key = calibration_key("m@main", "gb10", "0.32.0", FLAGS)
    other_sizes = [*FLAGS[:3], "456", FLAGS[4], "0.6"]
    assert calibration_key("m@main", "gb10", "0.32.0", other_sizes) == key
    assert calibration_key("m@main", "gb10", "0.32.1", FLAGS) != key
    assert calibration_key("m@main", "gb10", "0.32.0", ["--max-model-len", "8192", *FLAGS[2:]]) != key


def test_the_footprint_less_kv_and_weights_is_what_the_engine_held_beyond_them() -> None:
    ready = {"start_id": "s1", "ready_at": 2e9, "available_at_ready": 60 * GIB}
    m = measure(start(), ready, EngineFigures(weights_bytes=11 * GIB, kv_tokens=1100))
    assert m is not None and m.footprint_bytes == 40 * GIB
    assert m.non_kv_bytes == 40 * GIB - 20 * GIB - 11 * GIB  # vLLM's own weights figure wins
    assert m.at == 2e9 and m.precheck_bytes is None
    rows = {r.figure: r for r in compare(m)}
    assert rows["memory beyond weights and KV"].warn  # 9 GiB against 6 planned
    assert not rows["weights"].warn and abs(rows["KV cache tokens"].off - 0.1) < 1e-9


def test_a_mark_from_another_start_or_a_dedicated_gpu_gives_no_footprint() -> None:
    stale = {"start_id": "s0", "available_at_ready": 1}
    assert measure(start(), stale, EngineFigures()) is None  # nothing measured at all
    dedicated = start()
    dedicated["calibration"]["planned"]["memory_kind"] = "dedicated"  # type: ignore[index]
    m = measure(dedicated, {"start_id": "s1", "available_at_ready": 60 * GIB}, EngineFigures(kv_tokens=9))
    assert m is not None and m.footprint_bytes is None and m.kv_tokens == 9


def test_the_next_plan_takes_the_newest_measurement_of_each_figure_with_a_margin() -> None:
    ready = {"start_id": "s1", "ready_at": 2e9, "available_at_ready": 60 * GIB}
    first = measure(start(), ready, EngineFigures())
    refused = measure({**start(), "start_id": "s2"}, None, EngineFigures(free_at_check_bytes=91 * GIB))
    assert first and refused and refused.precheck_bytes == 9 * GIB
    used = applied(Calibration("0.32.0", {"k": [first, refused]}), "k")
    assert used.non_kv_bytes == with_margin(first.non_kv_bytes or 0)
    assert used.precheck_bytes == with_margin(9 * GIB) == 9 * GIB + int(0.9 * GIB)
    assert used.source.startswith("measured ") and "start s1" in used.source and "start s2" in used.source
    assert applied(Calibration("0.32.0", {"k": [first]}), "other").non_kv_bytes is None
    assert with_margin(100) == 100 + (256 << 20)  # at least 256 MiB
