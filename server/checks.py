"""Warm-up, idle probe and the hung verdict for one engine start (pure).

The monitor tells :class:`Checks` what it saw on each poll (:meth:`Checks.observe`),
asks what to send (:meth:`Checks.due`) and hands back each outcome
(:meth:`Checks.finish`). A start is *up* once vLLM's ``/health`` is 200 and it
lists the served model; it is *warm* once a warm-up generation returned (at
once with ``WARMUP=0``). Only an up start is probed or called hung, so an
engine still loading is never healed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .generation import KINDS, PROBE, WARMUP, Outcome


@dataclass(frozen=True)
class CheckPolicy:
    warmup: bool  # WARMUP
    interval: float  # PROBE_INTERVAL: idle seconds before a probe, and between tries after a failure
    heal_after: int  # HEAL_AFTER: failures in a row that make the engine hung


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
    failure: str | None  # the last failed warm-up or probe, until a success


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
        self.in_row = 0  # failures in a row that count toward a heal
        self.in_flight: tuple[str, float] | None = None
        self.last_end: float | None = None
        self.last_activity = now

    def sync(self, key: object, now: float) -> bool:
        """Start over when the launcher's state names another engine start."""
        if key == self.key:
            return False
        self.key = key
        self._reset(now)
        return True

    def observe(self, now: float, *, up: bool, busy: bool, completed: bool) -> None:
        """One poll: ``up`` (health 200 and the model listed), ``busy`` (requests
        running or waiting), ``completed`` (vLLM's finished-request count moved)."""
        if up and self.up_at is None:
            self.up_at = self.last_activity = now
            if not self.policy.warmup:
                self.warm_at = now
        if self.warm_at is None or not (busy or completed):
            return
        self.last_activity = now
        if completed:  # a request finished: the engine answers
            self.failure, self.in_row = None, 0

    def due(self, now: float) -> str | None:
        """What to send now, if anything."""
        if self.in_flight is not None or self.up_at is None:
            return None
        since_end = math.inf if self.last_end is None else now - self.last_end
        if self.warm_at is None:
            return WARMUP if since_end >= self.policy.interval else None
        idle = now - self.last_activity
        return PROBE if min(since_end, idle) >= self.policy.interval else None

    def begin(self, kind: str, now: float) -> None:
        self.in_flight = (kind, now)

    def finish(self, outcome: Outcome) -> None:
        self.in_flight, self.last_end = None, outcome.at
        stats = self.stats[outcome.kind]
        stats.sent += 1
        stats.failed += not outcome.ok
        stats.seconds += outcome.seconds
        if outcome.kind == WARMUP:
            self.warmup = outcome
        if outcome.ok:
            self.failure, self.in_row = None, 0
            self.last_activity = outcome.at
            if outcome.kind == WARMUP:
                self.warm_at = outcome.at
            return
        self.failure = outcome
        # A 4xx came from a live API server: not hung, so the count starts again.
        self.in_row = self.in_row + 1 if outcome.counts else 0

    def hung(self, stall: str | None) -> str | None:
        """Why this start's engine counts as hung (``stall``: readiness's stall reason), or None."""
        if self.up_at is None:
            return None
        if stall:
            return stall
        if self.failure is None or self.in_row < self.policy.heal_after:
            return None
        what = "idle probes" if self.warm_at is not None else "warm-ups"
        return (
            f"{self.in_row} {what} in a row failed (HEAL_AFTER {self.policy.heal_after}); "
            f"last: {self.failure.error}"
        )

    def view(self, now: float) -> CheckView:
        failure = None
        if self.failure is not None:
            name = "warm-up" if self.failure.kind == WARMUP else "idle probe"
            row = f" ({self.in_row} in a row)" if self.in_row > 1 else ""
            failure = f"{name} failed{row}: {self.failure.error}"
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
        probe = self.stats[PROBE]
        last_probe = self.failure if self.failure and self.failure.kind == PROBE else None
        return {
            "warmup": None if self.warmup is None else self.warmup.to_json(),
            "warm": self.warm_at is not None,
            "probe": {
                "sent": probe.sent,
                "failed": probe.failed,
                "failures_in_row": self.in_row,
                "last_failure": None if last_probe is None else last_probe.to_json(),
            },
        }
