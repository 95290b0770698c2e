"""The warm-up / idle-probe / hung state machine (pure, explicit clock)."""

from __future__ import annotations

from server.checks import CheckPolicy, Checks
from server.generation import PROBE, WARMUP, Outcome, warmup_tokens
from server.readiness import EngineView, decide

POLICY = CheckPolicy(warmup=True, interval=10.0, heal_after=3)
SERVING = {"phase": "starting", "served_model_name": "m"}
UP = EngineView(True, ("m",), 0.0, 0.0)


def ok(kind: str, at: float) -> Outcome:
    return Outcome(kind, True, 0.5, at, tokens=16)


def failed(kind: str, at: float, *, counts: bool = True, error: str = "no answer in 30s") -> Outcome:
    return Outcome(kind, False, 30.0, at, error, counts)


def up_checks(policy: CheckPolicy = POLICY) -> Checks:
    checks = Checks(policy, 0.0)
    checks.sync("start-1", 0.0)
    checks.observe(1.0, up=True, busy=False, completed=False)
    return checks


def warm_checks() -> Checks:
    """Up at 1 s, warmed by a warm-up that returned at 2 s."""
    checks = up_checks()
    checks.begin(WARMUP, 1.0)
    checks.finish(ok(WARMUP, 2.0))
    return checks


def test_nothing_is_sent_before_the_engine_lists_its_model() -> None:
    checks = Checks(POLICY, 0.0)
    checks.sync("start-1", 0.0)
    checks.observe(100.0, up=False, busy=False, completed=False)
    assert checks.due(100.0) is None and checks.hung("engine stalled") is None
    assert not checks.view(100.0).warm


def test_ready_only_once_the_warmup_returned() -> None:
    checks = up_checks()
    assert checks.due(1.0) == WARMUP
    checks.begin(WARMUP, 1.0)
    assert checks.due(2.0) is None  # one at a time
    view = checks.view(13.0)
    assert not view.warm and "has run for 12s" in view.waiting
    assert decide(SERVING, UP, 60, view).phase == "warming-up"
    checks.finish(ok(WARMUP, 14.0))
    view = checks.view(14.0)
    assert view.warm and decide(SERVING, UP, 60, view).ready


def test_warmup_off_is_warm_as_soon_as_the_model_is_listed() -> None:
    checks = up_checks(CheckPolicy(warmup=False, interval=10.0, heal_after=3))
    assert checks.view(1.0).warm and checks.due(1.0) is None and checks.due(11.0) == PROBE


def test_probes_only_after_an_idle_interval_and_never_while_busy() -> None:
    checks = warm_checks()
    assert checks.due(11.9) is None and checks.due(12.0) == PROBE
    checks.observe(12.0, up=True, busy=True, completed=False)
    assert checks.due(21.9) is None
    checks.observe(20.0, up=True, busy=False, completed=True)
    assert checks.due(29.9) is None and checks.due(30.0) == PROBE
    checks.begin(PROBE, 30.0)
    checks.finish(ok(PROBE, 30.1))
    assert checks.due(40.0) is None and checks.due(40.1) == PROBE  # at most one per interval


def test_a_failed_probe_makes_not_ready_until_the_next_success() -> None:
    checks = warm_checks()
    checks.begin(PROBE, 12.0)
    checks.finish(failed(PROBE, 42.0))
    verdict = decide(SERVING, UP, 60, checks.view(42.0))
    assert not verdict.ready and verdict.phase == "serving"
    assert verdict.reason == "idle probe failed: no answer in 30s"
    assert checks.due(51.9) is None and checks.due(52.0) == PROBE  # retried after an interval
    checks.begin(PROBE, 52.0)
    checks.finish(ok(PROBE, 52.1))
    assert decide(SERVING, UP, 60, checks.view(52.1)).ready


def test_hung_after_heal_after_failures_in_a_row_and_a_4xx_starts_the_count_again() -> None:
    checks = up_checks()
    for n in range(2):
        checks.begin(WARMUP, 10.0 * n)
        checks.finish(failed(WARMUP, 10.0 * n + 1))
    assert checks.hung(None) is None and checks.in_row == 2
    view = checks.view(12.0)
    assert view.failure == "warm-up failed (2 in a row): no answer in 30s; next warm-up within 10s"
    checks.begin(WARMUP, 20.0)
    checks.finish(failed(WARMUP, 21.0, counts=False, error="HTTP 401: vLLM refused the sidecar's API_KEY"))
    assert checks.in_row == 0 and checks.hung(None) is None
    for n in range(3):
        checks.begin(WARMUP, 30.0 + 10 * n)
        checks.finish(failed(WARMUP, 31.0 + 10 * n))
    assert checks.hung(None) == ("3 warm-ups in a row failed (HEAL_AFTER 3); last: no answer in 30s")


def test_a_completed_user_request_clears_a_probe_failure() -> None:
    checks = warm_checks()
    checks.begin(PROBE, 12.0)
    checks.finish(failed(PROBE, 42.0))
    checks.observe(43.0, up=True, busy=False, completed=True)
    assert checks.view(43.0).failure is None and checks.in_row == 0


def test_a_stall_of_an_up_engine_is_hung_and_a_new_start_starts_over() -> None:
    checks = up_checks()
    assert checks.hung("engine stalled: 2 requests running") == "engine stalled: 2 requests running"
    assert checks.sync("start-2", 50.0) and not checks.sync("start-2", 51.0)
    assert checks.hung("engine stalled: 2 requests running") is None and checks.due(51.0) is None


def test_an_mtp_warmup_runs_several_draft_rounds() -> None:
    assert warmup_tokens(0) == 16 and warmup_tokens(3) == 16 and warmup_tokens(5) == 24
