"""The sidecar's own generations: the warm-up before ready, the idle probe, and
the confirmation that asks a stalled-looking engine for one token.

Each is one short chat completion (a plain completion when the model has no
chat template). Users tell them apart from their own traffic: the
``X-Request-Id`` starts ``spark-serve-warmup-``, ``spark-serve-probe-`` or
``spark-serve-confirm-`` (vLLM
uses it as the request id in its logs) and the ``User-Agent`` is
``spark-serve-sidecar/<version>``. vLLM counts them like any request, so
``sparkserve_probe_duration_seconds_count`` is what to subtract from its counters.
"""

from __future__ import annotations

import asyncio
import errno
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from entrypoint import __version__

WARMUP, PROBE, CONFIRM = "warmup", "probe", "confirm"
KINDS = (WARMUP, PROBE, CONFIRM)
# What each kind is called in a reason: "3 confirmations in a row failed".
PLURAL = {WARMUP: "warm-ups", PROBE: "idle probes", CONFIRM: "confirmations"}
SINGULAR = {WARMUP: "warm-up", PROBE: "idle probe", CONFIRM: "confirmation"}
WARMUP_TOKENS = 16
DRAFT_ROUNDS = 4  # speculative rounds a warm-up runs, so the drafter and verifier are built too
PROMPT = "Say hello."


def warmup_tokens(speculative_tokens: int) -> int:
    """Tokens the warm-up generates: enough for several draft rounds with MTP."""
    return max(WARMUP_TOKENS, DRAFT_ROUNDS * (speculative_tokens + 1))


@dataclass(frozen=True)
class Outcome:
    """How one warm-up or probe went."""

    kind: str
    ok: bool
    seconds: float
    at: float  # when it ended
    error: str | None = None
    # A failure the engine is to blame for (no answer in time, 5xx, connection):
    # counts toward a heal. A 4xx is the sidecar's configuration, never a heal.
    counts: bool = True
    tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "at": self.at,
            "error": self.error,
            "tokens": self.tokens,
        }


LATE_S = 1.0  # a timeout this late is the sidecar's own overload, not the engine's silence
_OWN_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL})


def own_failure(err: httpx.HTTPError) -> bool:
    """A failure on the sidecar's side: no free pooled connection, or no file
    descriptor, buffer or local port to open one. Never counts toward a heal."""
    if isinstance(err, httpx.PoolTimeout):
        return True
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _OWN_ERRNOS:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error", body) if isinstance(body, dict) else body
    text = error.get("message") if isinstance(error, dict) else error
    return str(text)[:200]


class Generator:
    """Sends the sidecar's generations to vLLM's OpenAI API."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        api_key: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.url, self.api_key, self.clock = client, url, api_key, clock
        self.route = "chat"  # "completions" once vLLM said the model has no chat template

    def _headers(self, kind: str) -> dict[str, str]:
        headers = {
            "X-Request-Id": f"spark-serve-{kind}-{uuid.uuid4().hex[:12]}",
            "User-Agent": f"spark-serve-sidecar/{__version__}",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, route: str, model: str, max_tokens: int, kind: str) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0}
        if kind == WARMUP:
            body["ignore_eos"] = True  # the whole length, even from a model that stops at once
        if route == "chat":
            return "/v1/chat/completions", {**body, "messages": [{"role": "user", "content": PROMPT}]}
        return "/v1/completions", {**body, "prompt": PROMPT}

    async def _post(
        self, route: str, model: str, max_tokens: int, kind: str, pool_s: float
    ) -> httpx.Response:
        path, body = self._request(route, model, max_tokens, kind)
        # No read timeout (asyncio.timeout bounds the whole exchange), but a pool timeout well
        # inside it: waiting for one of the sidecar's own connections is never the engine's silence.
        timeout = httpx.Timeout(None, pool=pool_s)
        return await self.client.post(
            self.url + path, json=body, headers=self._headers(kind), timeout=timeout
        )

    async def _exchange(self, model: str, max_tokens: int, kind: str, pool_s: float) -> httpx.Response:
        response = await self._post(self.route, model, max_tokens, kind, pool_s)
        if response.status_code == 400 and self.route == "chat":
            fallback = await self._post("completions", model, max_tokens, kind, pool_s)
            if fallback.status_code == 200:
                self.route = "completions"
                return fallback
        return response

    async def send(self, kind: str, model: str, max_tokens: int, timeout: float) -> Outcome:
        start = time.perf_counter()

        def outcome(ok: bool, error: str | None = None, counts: bool = True, tokens: int = 0) -> Outcome:
            return Outcome(kind, ok, time.perf_counter() - start, self.clock(), error, counts, tokens)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                response = await self._exchange(model, max_tokens, kind, timeout / 2)
        except TimeoutError:
            late = loop.time() - deadline
            if late > max(LATE_S, timeout * 0.1):  # the sidecar was too busy to read the answer
                return outcome(False, f"the sidecar's own event loop ran {late:.1f}s late", counts=False)
            return outcome(False, f"no answer in {timeout:g}s")
        except httpx.HTTPError as err:
            if own_failure(err):
                return outcome(False, f"the sidecar could not open a connection: {err!r}", counts=False)
            return outcome(False, f"{type(err).__name__} from {self.url}")
        code = response.status_code
        if code == 200:
            try:
                usage = response.json().get("usage") or {}
                tokens = int(usage.get("completion_tokens") or 0)
            except (ValueError, AttributeError, TypeError):
                tokens = 0
            return outcome(True, tokens=tokens)
        if code in (401, 403):
            return outcome(False, f"HTTP {code}: vLLM refused the sidecar's API_KEY", counts=False)
        return outcome(False, f"HTTP {code}: {_message(response)}", counts=code >= 500)
