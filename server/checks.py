"""Warm-up, idle probe, stall confirmation and the hung verdict for one engine start (pure).

The monitor tells :class:`Checks` what it saw on each poll (:meth:`Checks.observe`),
asks what to send (:meth:`Checks.due`) and hands back each outcome
(:meth:`Checks.finish`). A start is *up* once vLLM's ``/health`` is 200 and it
lists the served model; it is *warm* once a warm-up generation returned (at
once with ``WARMUP=0``). Only an up start is probed or called hung, so an
engine still loading is never healed.

A stall is a question, not a verdict: token counters that do not move while
requests run (vLLM counts nothing while it prefills a long prompt in chunks)
start a *confirmation*, a one-token generation. Only failed generations make
an engine hung: ``HEAL_AFTER`` in a row with no answer within their timeout.
A failure while the engine is saturated (requests waiting, and its KV cache
full or its sequences at ``--max-num-seqs``) is shown and not counted, provided
its gauges moved while the generation waited: a full engine answers late, it is
not hung, and a hung one publishes nothing.
Before warm, only the warm-up is judged (by ``WARMUP_TIMEOUT``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .generation import CONFIRM, KINDS, PLURAL, PROBE, SINGULAR, WARMUP, Outcome

SATURATED_KV = 0.95  # KV cache usage (0-1) at which a queue is the engine's capacity, not a hang


@dataclass(frozen=True)
class CheckPolicy:
    warmup: bool  # WARMUP
    interval: float  # PROBE_INTERVAL: idle seconds before a probe, and between tries after a failure
    heal_after: int  # HEAL_AFTER: failures in a row that make the engine hung
    window: float = 60.0  # READY_PROGRESS_WINDOW: frozen seconds, while requests run, before confirming


@dataclass(frozen=True)
class Load:
    """What the engine's own gauges said on one poll."""

    running: float  # vllm:num_requests_running
    waiting: float  # vllm:num_requests_waiting
    kv_usage: float | None  # vllm:kv_cache_usage_perc (0-1), None when not exposed
    stalled_for: float  # seconds the token counters have not moved while requests ran
    at_seq_limit: bool = False  # running == the engine's --max-num-seqs

    @property
    def saturated(self) -> bool:
        """Requests wait because the engine is full: its KV cache, or its sequence limit."""
        kv_full = self.kv_usage is not None and self.kv_usage >= SATURATED_KV
        return self.waiting > 0 and (kv_full or self.at_seq_limit)

    def gauges(self) -> tuple[float, float, float | None]:
        return self.running, self.waiting, self.kv_usage

    def describe(self) -> str:
        kv = f", KV cache {self.kv_usage:.0%} full" if self.kv_usage is not None else ""
        return f"{self.running:g} running, {self.waiting:g} waiting{kv}"


IDLE = Load(0.0, 0.0, None, 0.0)


@dataclass
class KindStats:
    """Generations of one kind over the sidecar's life (for the metrics)."""

    sent: int = 0  # finished, ok or not
    failed: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class CheckView:
    """What readiness needs from the checks."""

    warm: bool
    waiting: str  # why not warm yet ("" once warm)
    failure: str | None  # the last failed warm-up, probe or confirmation, until a success


@dataclass
class Stall:
    """Token counters frozen while requests run, since ``since``; what the gauges did meanwhile."""

    since: float
    first: Load
    last: Load
    kv_moved: bool = False  # KV usage changed during the stall: the scheduler is allocating (a prefill)
    confirmed: int = 0  # confirmations that answered during this stall

    def to_json(self) -> dict[str, Any]:
        return {
            "for_s": round(self.last.stalled_for, 1),
            "since": self.since,
            "running": self.last.running,
            "waiting": self.last.waiting,
            "kv_usage": self.last.kv_usage,
            "kv_usage_at_start": self.first.kv_usage,
            "kv_moved": self.kv_moved,
            "saturated": self.last.saturated,
            "confirmed": self.confirmed,
        }


class Checks:
    def __init__(self, policy: CheckPolicy, now: float) -> None:
        self.policy = policy
        self.stats = {kind: KindStats() for kind in KINDS}
        self.key: object = None
        self._reset(now)

    def _reset(self, now: float) -> None:
        self.up_at: float | None = None
        self.warm_at: float | None = None
        self.warmup: Outcome | None = None  # this start's last warm-up
        self.failure: Outcome | None = None
        self.uncounted: str | None = None  # why the last failure did not count toward a heal
        self.in_row = 0  # failures in a row that count toward a heal
        self.in_flight: tuple[str, float] | None = None
        self.saturated_in_flight = False  # the engine was saturated, live, while the generation waited
        self._flight_gauges: tuple[float, float, float | None] = (0.0, 0.0, None)
        self.last_end: float | None = None
        self.last_activity = now
        self.load = IDLE
        self.stall: Stall | None = None

    def sync(self, key: object, now: float) -> bool:
        """Start over when the launcher's state names another engine start."""
        if key == self.key:
            return False
        self.key = key
        self._reset(now)
        return True

    def observe(self, now: float, *, up: bool, busy: bool, completed: bool, load: Load | None = None) -> None:
        """One poll: ``up`` (health 200 and the model listed), ``busy`` (requests
        running or waiting), ``completed`` (vLLM's finished-request count moved),
        ``load`` (its gauges, when /metrics answered)."""
        if up and self.up_at is None:
            self.up_at = self.last_activity = now
            if not self.policy.warmup:
                self.warm_at = now
        if load is not None:
            self._watch(now, load)
        if self.warm_at is None or not (busy or completed):
            return
        self.last_activity = now
        if completed:  # a request finished: the engine answers
            self.failure, self.uncounted, self.in_row = None, None, 0

    def _watch(self, now: float, load: Load) -> None:
        previous, self.load = self.load, load
        # Saturation is believed only from gauges the engine published after the generation
        # was sent: a hung engine's gauges are frozen, whatever they last said.
        if self.in_flight is not None and load.saturated and load.gauges() != self._flight_gauges:
            self.saturated_in_flight = True
        frozen = self.warm_at is not None and load.running > 0 and load.stalled_for > self.policy.window
        if not frozen:
            self.stall = None
        elif self.stall is None:
            self.stall = Stall(now, load, load)
        else:
            self.stall.kv_moved |= load.kv_usage != previous.kv_usage
            self.stall.last = load

    def due(self, now: float) -> str | None:
        """What to send now, if anything."""
        if self.in_flight is not None or self.up_at is None:
            return None
        since_end = math.inf if self.last_end is None else now - self.last_end
        if self.warm_at is None:
            return WARMUP if since_end >= self.policy.interval else None
        if self.stall is not None:
            return CONFIRM  # one after another while the stall lasts
        idle = now - self.last_activity
        return PROBE if min(since_end, idle) >= self.policy.interval else None

    def begin(self, kind: str, now: float) -> None:
        self.in_flight = (kind, now)
        self.saturated_in_flight = False
        self._flight_gauges = self.load.gauges()

    def finish(self, outcome: Outcome) -> None:
        self.in_flight, self.last_end = None, outcome.at
        stats = self.stats[outcome.kind]
        stats.sent += 1
        stats.failed += not outcome.ok
        stats.seconds += outcome.seconds
        if outcome.kind == WARMUP:
            self.warmup = outcome
        if outcome.ok:
            self.failure, self.uncounted, self.in_row = None, None, 0
            self.last_activity = outcome.at
            if outcome.kind == WARMUP:
                self.warm_at = outcome.at
            if outcome.kind == CONFIRM and self.stall is not None:
                self.stall.confirmed += 1
            return
        self.failure = outcome
        if not outcome.counts:  # a 4xx came from a live API server; the sidecar's own failure
            self.uncounted, self.in_row = outcome.error, 0
        elif self.saturated_in_flight:  # queued behind a full engine: keep asking, do not count
            self.uncounted = f"the engine is saturated ({self.load.describe()}); not counted toward a heal"
        else:
            self.uncounted, self.in_row = None, self.in_row + 1

    def hung(self) -> str | None:
        """Why this start's engine counts as hung, or None."""
        if self.up_at is None or self.failure is None or self.in_row < self.policy.heal_after:
            return None
        reason = (
            f"{self.in_row} {PLURAL[self.failure.kind]} in a row failed "
            f"(HEAL_AFTER {self.policy.heal_after}); last: {self.failure.error}"
        )
        if self.stall is not None:
            reason += f"; no token progress for {self.stall.last.stalled_for:.0f}s"
        return reason

    def busy(self) -> str | None:
        """What the stall looks like, while one lasts (for /status and readiness's reason)."""
        if self.stall is None:
            return None
        moved = "; KV usage moving (a prefill)" if self.stall.kv_moved else ""
        full = "; saturated" if self.load.saturated else ""
        return (
            f"busy: no token progress for {self.load.stalled_for:.0f}s with {self.load.describe()}"
            f"{moved}{full}; confirming with one-token generations"
        )

    def view(self, now: float) -> CheckView:
        failure = None
        if self.failure is not None:
            name = SINGULAR[self.failure.kind]
            row = f" ({self.in_row} in a row)" if self.in_row > 1 else ""
            failure = f"{name} failed{row}: {self.failure.error}"
            if self.uncounted and self.failure.counts:
                failure += f"; {self.uncounted}"
            if self.warm_at is None:
                failure += f"; next warm-up within {self.policy.interval:g}s"
        if self.warm_at is not None:
            return CheckView(True, "", failure)
        if self.in_flight is not None:
            waiting = f"warming up: the first generation has run for {now - self.in_flight[1]:.0f}s"
        else:
            waiting = "warming up: the first generation is about to be sent"
        return CheckView(False, waiting, failure)

    def to_json(self) -> dict[str, Any]:
        def kind_json(kind: str) -> dict[str, Any]:
            stats = self.stats[kind]
            last = self.failure if self.failure and self.failure.kind == kind else None
            return {
                "sent": stats.sent,
                "failed": stats.failed,
                "last_failure": None if last is None else last.to_json(),
            }

        return {
            "warmup": None if self.warmup is None else self.warmup.to_json(),
            "warm": self.warm_at is not None,
            "probe": {**kind_json(PROBE), "failures_in_row": self.in_row},
            "confirm": kind_json(CONFIRM),
            "stall": None if self.stall is None else {**self.stall.to_json(), "busy": self.busy()},
            "uncounted": self.uncounted,
        }
