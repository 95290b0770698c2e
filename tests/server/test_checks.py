"""The warm-up / idle-probe / hung state machine (pure, explicit clock)."""

from __future__ import annotations

from server.checks import CheckPolicy, Checks, Load
from server.generation import CONFIRM, PROBE, WARMUP, Outcome, warmup_tokens
from server.readiness import EngineView, decide

POLICY = CheckPolicy(warmup=True, interval=10.0, heal_after=3)
SERVING = {"phase": "starting", "served_model_name": "m"}
UP = EngineView(True, ("m",))


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
    assert checks.due(100.0) is None and checks.hung() is None
    assert not checks.view(100.0).warm


def test_ready_only_once_the_warmup_returned() -> None:
    checks = up_checks()
    assert checks.due(1.0) == WARMUP
    checks.begin(WARMUP, 1.0)
    assert checks.due(2.0) is None  # one at a time
    view = checks.view(13.0)
    assert not view.warm and "has run for 12s" in view.waiting
    assert decide(SERVING, UP, view).phase == "warming-up"
    checks.finish(ok(WARMUP, 14.0))
    view = checks.view(14.0)
    assert view.warm and decide(SERVING, UP, view).ready


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
    verdict = decide(SERVING, UP, checks.view(42.0))
    assert not verdict.ready and verdict.phase == "serving"
    assert verdict.reason == "idle probe failed: no answer in 30s"
    assert checks.due(51.9) is None and checks.due(52.0) == PROBE  # retried after an interval
    checks.begin(PROBE, 52.0)
    checks.finish(ok(PROBE, 52.1))
    assert decide(SERVING, UP, checks.view(52.1)).ready


def test_hung_after_heal_after_failures_in_a_row_and_a_4xx_starts_the_count_again() -> None:
    checks = up_checks()
    for n in range(2):
        checks.begin(WARMUP, 10.0 * n)
        checks.finish(failed(WARMUP, 10.0 * n + 1))
    assert checks.hung() is None and checks.in_row == 2
    view = checks.view(12.0)
    assert view.failure == "warm-up failed (2 in a row): no answer in 30s; next warm-up within 10s"
    checks.begin(WARMUP, 20.0)
    checks.finish(failed(WARMUP, 21.0, counts=False, error="HTTP 401: vLLM refused the sidecar's API_KEY"))
    assert checks.in_row == 0 and checks.hung() is None
    for n in range(3):
        checks.begin(WARMUP, 30.0 + 10 * n)
        checks.finish(failed(WARMUP, 31.0 + 10 * n))
    assert checks.hung() == ("3 warm-ups in a row failed (HEAL_AFTER 3); last: no answer in 30s")


def test_a_completed_user_request_clears_a_probe_failure() -> None:
    checks = warm_checks()
    checks.begin(PROBE, 12.0)
    checks.finish(failed(PROBE, 42.0))
    checks.observe(43.0, up=True, busy=False, completed=True)
    assert checks.view(43.0).failure is None and checks.in_row == 0


def stalled(seconds: float, *, waiting: float = 0.0, kv: float | None = 0.2) -> Load:
    return Load(running=1.0, waiting=waiting, kv_usage=kv, stalled_for=seconds)


def test_a_stall_is_a_question_a_confirmation_answers() -> None:
    checks = warm_checks()
    checks.observe(3.0, up=True, busy=True, completed=False, load=stalled(59.0))
    assert checks.stall is None and checks.due(3.0) is None  # within READY_PROGRESS_WINDOW
    checks.observe(4.0, up=True, busy=True, completed=False, load=stalled(61.0, kv=0.3))
    assert checks.due(4.0) == CONFIRM and checks.hung() is None
    assert decide(SERVING, UP, checks.view(4.0)).ready  # frozen counters alone never unready
    checks.begin(CONFIRM, 4.0)
    checks.observe(5.0, up=True, busy=True, completed=False, load=stalled(62.0, kv=0.4))
    assert checks.stall is not None and checks.stall.kv_moved  # a prefill allocating KV: evidence
    checks.finish(ok(CONFIRM, 5.5))
    assert checks.stall.confirmed == 1 and checks.hung() is None and checks.in_row == 0
    assert checks.due(5.5) == CONFIRM  # asked again while the stall lasts


def test_only_failed_confirmations_in_a_row_make_hung() -> None:
    checks = warm_checks()
    for n in range(3):
        checks.observe(10.0 * n + 3, up=True, busy=True, completed=False, load=stalled(61.0 + 10 * n))
        assert checks.due(10.0 * n + 3) == CONFIRM
        checks.begin(CONFIRM, 10.0 * n + 3)
        checks.finish(failed(CONFIRM, 10.0 * n + 13))
    reason = checks.hung()
    assert reason is not None and reason.startswith("3 confirmations in a row failed (HEAL_AFTER 3)")
    assert "no token progress for 81s" in reason
    assert not decide(SERVING, UP, checks.view(33.0)).ready


def test_a_saturated_engine_is_confirmed_but_never_counted() -> None:
    checks = warm_checks()
    for n in range(5):
        checks.observe(10.0 * n + 3, up=True, busy=True, completed=False, load=stalled(61.0 + n, kv=0.98))
        checks.begin(CONFIRM, 10.0 * n + 3)
        # The engine published the confirmation waiting behind a full cache: live, and full.
        load = stalled(62.0 + n, waiting=4.0, kv=0.99)
        checks.observe(10.0 * n + 4, up=True, busy=True, completed=False, load=load)
        checks.finish(failed(CONFIRM, 10.0 * n + 13))
    assert checks.hung() is None and checks.in_row == 0
    assert checks.uncounted is not None and "saturated (1 running, 4 waiting, KV cache 99% full)" in (
        checks.uncounted
    )
    busy = checks.busy()
    assert busy is not None and "saturated" in busy
    assert "not counted toward a heal" in str(decide(SERVING, UP, checks.view(53.0)).reason)


def test_at_its_sequence_limit_a_queued_confirmation_is_not_counted() -> None:
    checks = warm_checks()
    full = Load(running=1.0, waiting=0.0, kv_usage=0.1, stalled_for=61.0, at_seq_limit=True)
    checks.observe(3.0, up=True, busy=True, completed=False, load=full)
    checks.begin(CONFIRM, 3.0)
    queued = Load(running=1.0, waiting=1.0, kv_usage=0.2, stalled_for=62.0, at_seq_limit=True)
    checks.observe(4.0, up=True, busy=True, completed=False, load=queued)
    checks.finish(failed(CONFIRM, 8.0, error="no answer in 5s"))
    assert checks.in_row == 0 and checks.hung() is None


def test_frozen_gauges_that_say_saturated_are_not_believed() -> None:
    """A hung engine publishes nothing: its last gauges, however full, count for nothing."""
    checks = CheckPolicy(warmup=True, interval=10.0, heal_after=2)
    hung = Checks(checks, 0.0)
    hung.sync("start-1", 0.0)
    hung.observe(1.0, up=True, busy=False, completed=False)
    hung.begin(WARMUP, 1.0)
    hung.finish(ok(WARMUP, 2.0))
    frozen = stalled(61.0, waiting=4.0, kv=0.99)
    for n in range(2):
        hung.observe(10.0 * n + 3, up=True, busy=True, completed=False, load=frozen)
        hung.begin(CONFIRM, 10.0 * n + 3)
        hung.observe(10.0 * n + 4, up=True, busy=True, completed=False, load=frozen)
        hung.finish(failed(CONFIRM, 10.0 * n + 13))
    assert hung.hung() is not None and hung.in_row == 2


def test_before_warm_a_stall_is_not_asked_and_a_new_start_starts_over() -> None:
    checks = up_checks()
    checks.observe(2.0, up=True, busy=True, completed=False, load=stalled(500.0))
    assert checks.stall is None and checks.due(2.0) == WARMUP  # the warm-up is judged alone
    assert checks.sync("start-2", 50.0) and not checks.sync("start-2", 51.0)
    assert checks.hung() is None and checks.due(51.0) is None


def test_an_mtp_warmup_runs_several_draft_rounds() -> None:
    assert warmup_tokens(0) == 16 and warmup_tokens(3) == 16 and warmup_tokens(5) == 24
