"""The restart back-off and the start guard's need (pure)."""

from __future__ import annotations

import dataclasses

from entrypoint.plan.memory import MemoryPlan
from entrypoint.plan.restarts import (
    KEEP,
    MAX_DELAY_S,
    WINDOW_S,
    BackoffPolicy,
    StartRecord,
    decide_backoff,
    failed_in_a_row,
    fingerprint,
    records,
    remember,
    start_need_bytes,
)

POLICY = BackoffPolicy(limit=5, base_s=15.0)
ARGV = fingerprint(["vllm", "serve", "/m", "--port", "8000"])
NOW = 1_000_000.0


def starts(*ages: float, argv: str = ARGV) -> list[StartRecord]:
    """Start records that many seconds before NOW (one id each: s0, s1, ...)."""
    return [StartRecord(f"s{i}", NOW - age, argv) for i, age in enumerate(ages)]


def test_no_history_starts_at_once() -> None:
    decision = decide_backoff([], ARGV, None, NOW, POLICY)
    assert (decision.failed, decision.delay_s, decision.halt) == (0, 0.0, False)


def test_delays_double_per_failed_start_then_halt_at_the_limit() -> None:
    delays = []
    for failed in range(1, 5):
        history = starts(*(60.0 * (failed - i) for i in range(failed)))
        decision = decide_backoff(history, ARGV, None, NOW, POLICY)
        assert decision.failed == failed and not decision.halt
        delays.append(decision.delay_s)
    assert delays == [15.0, 30.0, 60.0, 120.0]
    five = decide_backoff(starts(300, 240, 180, 120, 60), ARGV, None, NOW, POLICY)
    assert five.halt and five.failed == 5 and "halted" in five.reason()


def test_delay_is_capped() -> None:
    assert BackoffPolicy(limit=50, base_s=15.0).delay(20) == MAX_DELAY_S


def test_a_start_that_reached_ready_ends_the_streak() -> None:
    history = starts(400, 300, 200, 100)  # s0 .. s3, s1 reached ready
    assert failed_in_a_row(history, ARGV, "s1", NOW) == 2


def test_other_arguments_reset_the_streak() -> None:
    history = [*starts(300, 200, argv="other"), *starts(100)]
    assert failed_in_a_row(history, ARGV, None, NOW) == 1
    assert failed_in_a_row(history, fingerprint(["vllm", "--new"]), None, NOW) == 0


def test_a_gap_longer_than_the_window_is_not_a_quick_failure() -> None:
    assert failed_in_a_row(starts(WINDOW_S + 10), ARGV, None, NOW) == 0
    assert failed_in_a_row(starts(WINDOW_S * 3, 100), ARGV, None, NOW) == 1


def test_limit_zero_turns_the_back_off_off() -> None:
    decision = decide_backoff(starts(50, 40, 30, 20, 10, 5), ARGV, None, NOW, BackoffPolicy(0, 15.0))
    assert (decision.failed, decision.delay_s, decision.halt) == (0, 0.0, False)


def test_history_round_trips_skips_garbage_and_keeps_the_newest() -> None:
    history: list[StartRecord] = []
    for i in range(KEEP + 5):
        history = records(remember(history, StartRecord(f"s{i}", float(i), ARGV)))
    assert len(history) == KEEP and history[-1].id == f"s{KEEP + 4}"
    assert records([{"id": "a"}, "x", {"id": "b", "at": 1, "fingerprint": "f"}]) == [
        StartRecord("b", 1.0, "f")
    ]
    assert records({"not": "a list"}) == []


def plan(kind: str, device: int, weights: int, kv: int, allowance: int) -> MemoryPlan:
    fields = {f.name: 0 for f in dataclasses.fields(MemoryPlan)}
    fields.update(
        hardware="x",
        memory_kind=kind,
        device_bytes=device,
        weights_bytes=weights,
        kv_cache_bytes=kv,
        allowance_bytes=allowance,
        budget_basis="",
        weights_source="",
        fits=True,
        explicit_kv=True,
        gpu_memory_utilization=None,
        decode_ceiling_tokens_per_s=None,
        decode_ceiling_at_max_len_tokens_per_s=None,
    )
    return MemoryPlan(**fields)


def test_start_need_is_vllms_own_start_check_on_a_gpu() -> None:
    # vLLM's request_memory: utilization × total must be free (MemAvailable on GB10) once
    # its own processes hold the pre-check use.
    gb10 = plan("unified", 128_000_000_000, 20_000_000_000, 30_000_000_000, 7_000_000_000)
    gb10 = dataclasses.replace(gb10, precheck_bytes=3_000_000_000)
    assert start_need_bytes(gb10, 0.45) == 57_600_000_000 + 3_000_000_000  # the user's utilization
    assert start_need_bytes(dataclasses.replace(gb10, utilization_at_start=True), 0.45) == 57_000_000_000
    h100 = plan("dedicated", 80_000_000_000, 10, 10, 10)
    assert start_need_bytes(h100, None) == 73_600_000_000  # vLLM 0.32's default 0.92
    host = plan("host", 16_000_000_000, 1_000, 2_000, 3_000)
    assert start_need_bytes(host, 0.9) == 6_000


def test_a_pre_check_use_above_the_allowance_raises_the_need_where_set_at_start() -> None:
    big = dataclasses.replace(
        plan("unified", 128_000_000_000, 20_000_000_000, 30_000_000_000, 7_000_000_000),
        precheck_bytes=9_000_000_000,  # 8-9 GiB on some GB10 kernel and driver pairs
        utilization_at_start=True,
    )
    assert start_need_bytes(big, None) == 59_000_000_000
