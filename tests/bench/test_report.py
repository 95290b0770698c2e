"""Benchmark rows (pure): windows from progress events, samples inside them, the decode ceiling."""

from __future__ import annotations

import json

from entrypoint.bench.output import comparison, markdown
from entrypoint.bench.report import Row, measure, windows
from entrypoint.bench.sampler import Sample, parse_sample
from entrypoint.plan.memory import ceiling_at

ROW = Row("tg128 @ d4096 (c2)", "tg", 2048, 128, 4096, 2, 40.0, 1.0, 20.0, 44.0, None, (10.0, 20.0))
MEMORY = {"bandwidth_bytes_per_s": 273e9, "decode_read_bytes": 3_000_000_000, "kv_bytes_per_token": 40_000}


def test_windows_span_a_rows_requests_from_first_start_to_last_end() -> None:
    start = {"type": "request_start", "prompt_size": 2048, "response_size": 128, "context_size": 0}
    events = [
        {**start, "request_id": 0, "concurrency": 2, "ts": 5.0},
        {**start, "request_id": 1, "concurrency": 2, "ts": 5.1},
        {"type": "request_end", "request_id": 0, "ts": 7.0},
        {"type": "request_end", "request_id": 1, "ts": 7.5},
        {"type": "request_end", "request_id": 99, "ts": 100.0},  # a warm-up request: no start event
    ]
    assert windows(events) == {(2048, 128, 0, 2): (5.0, 7.5)}


def test_a_row_takes_power_and_acceptance_from_its_window_and_the_ceiling_from_the_plan() -> None:
    samples = [
        Sample(9.0, 10.0, 40.0, 0.1, 100.0, 200.0),  # before: the counters' baseline only
        Sample(12.0, 60.0, 60.0, 0.3, 130.0, 240.0),
        Sample(18.0, 80.0, 70.0, 0.5, 160.0, 280.0),
        Sample(25.0, 99.0, 99.0, 0.9, 999.0, 999.0),  # after
    ]
    row = measure(ROW, samples, MEMORY)
    assert (row.power_watts_mean, row.power_watts_peak) == (70.0, 80.0)
    assert (row.temperature_celsius_mean, row.temperature_celsius_peak) == (65.0, 70.0)
    assert row.tokens_per_s_per_watt == 40.0 / 70.0 and row.kv_usage_peak == 0.5
    assert row.spec_acceptance == 60.0 / 80.0
    # Each step reads the weights once and both sequences' KV at depth + prompt + half the generation.
    expected = 273e9 * 2 / (3e9 + 2 * 40_000 * (4096 + 2048 + 64))
    assert row.ceiling_tokens_per_s == round(expected, 1) == ceiling_at(273e9, 3_000_000_000, 40_000, 6208, 2)
    assert row.of_ceiling == 40.0 / round(expected, 1)


def test_more_sequences_touch_more_experts_and_mtp_yields_more_tokens_per_step() -> None:
    moe = {**MEMORY, "decode_expert_bytes": 16_000_000_000, "expert_share": 8 / 256, "speculative_tokens": 2}
    # one sequence reads its 8/256 of the experts (inside decode_read_bytes); two touch 1 − (1 − 8/256)²
    touched = 16e9 * ((1 - (1 - 8 / 256) ** 2) - 8 / 256)
    per_step = 3e9 + touched + 2 * 40_000 * 6208
    assert ceiling_at(273e9, 3_000_000_000, 40_000, 6208, 2, 16_000_000_000, 8 / 256) == round(
        273e9 * 2 / per_step, 1
    )
    samples = [Sample(9.0, 10.0, 40.0, 0.1, 100.0, 200.0), Sample(18.0, 80.0, 70.0, 0.5, 160.0, 280.0)]
    row = measure(ROW, samples, moe)  # acceptance 60 of 80 drafts: 1 + 2 × 0.75 tokens per step
    assert row.ceiling_tokens_per_s == round(273e9 * 2 * 2.5 / per_step, 1)
    unmeasured = measure(ROW, [], moe)  # no acceptance: the draft is not counted
    assert unmeasured.ceiling_tokens_per_s == round(273e9 * 2 / per_step, 1)


def test_a_row_above_its_ceiling_is_labelled() -> None:
    fast = measure(ROW, [], {**MEMORY, "decode_read_bytes": 200_000_000_000})
    assert fast.of_ceiling is not None and fast.of_ceiling > 1
    assert "(above the ceiling)" in markdown([fast], "t", [])
    assert "(above the ceiling)" not in markdown([measure(ROW, [], MEMORY)], "t", [])


def test_without_samples_or_a_bandwidth_the_columns_stay_empty_and_are_left_out() -> None:
    row = measure(ROW, [], {**MEMORY, "bandwidth_bytes_per_s": None})
    assert row.power_watts_mean is None and row.ceiling_tokens_per_s is None
    table = markdown([row], "t", [])
    assert "W mean" not in table and "ceiling" not in table and "tg128 @ d4096 (c2)" in table


def test_samples_parse_the_sidecars_gpu_and_vllms_engine_series() -> None:
    text = (
        "# TYPE sparkserve_gpu_power_watts gauge\n"
        'sparkserve_gpu_power_watts{gpu="0",name="a"} 30.5\n'
        'sparkserve_gpu_power_watts{gpu="1",name="b"} 9.5\n'
        "# TYPE sparkserve_gpu_temperature_celsius gauge\n"
        'sparkserve_gpu_temperature_celsius{gpu="0",name="a"} 50\n'
        'sparkserve_gpu_temperature_celsius{gpu="1",name="b"} 61\n'
        '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine="0"} 0.25\n'
    )
    assert parse_sample(text, 1.0) == Sample(1.0, 40.0, 61.0, 0.25)


def test_with_models_a_sample_holds_the_benchmarked_models_engine_only() -> None:
    text = (  # the sidecar's page with MODELS: every engine's series, each with its model_name
        'sparkserve_gpu_power_watts{gpu="0",name="a",model_name="chat"} 30.5\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="coder"} 0.75\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="chat"} 0.25\n'
        'vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="coder"} 90\n'
        'vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="chat"} 7\n'
    )
    assert parse_sample(text, 1.0, "chat") == Sample(1.0, 30.5, None, 0.25, 7.0)
    one = "".join(x + "\n" for x in text.splitlines() if 'model_name="chat"' in x)
    assert parse_sample(one, 1.0, "alias") == Sample(1.0, 30.5, None, 0.25, 7.0)  # one engine: all of it


def test_a_comparison_divides_row_by_row() -> None:
    a = {"profile": "p", "rows": [{"test": "tg128", "tokens_per_s": 40.0, "tokens_per_s_per_watt": 0.5}]}
    b = {"profile": "p", "variant": "mtp", "rows": [{"test": "tg128", "tokens_per_s": 60.0}]}
    text = comparison(json.loads(json.dumps(b)), a)
    assert "| tg128  |   40.00 |   60.00 | 1.500 |" in text and "B: p [mtp]" in text
