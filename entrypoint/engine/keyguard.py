"""The API key on every route of vLLM's API server but its health and metrics.

vLLM's own key check (``--api-key`` / ``VLLM_API_KEY``) guards only the paths
under ``/v1``, ``/v2``, ``/inference`` and ``/cohere``: ``/invocations``,
``/tokenize``, ``/pooling``, ``/classify``, ``/score``, ``/rerank``, the docs
and whatever else a vLLM release mounts elsewhere answer without it. When
``API_KEY`` is set the launcher adds this pure ASGI middleware with vLLM's own
``--middleware`` flag; it turns the allowance around: every path needs the key
(``Authorization: Bearer <key>``), except the few that reveal nothing a probe
or a scraper should need a key for (:data:`OPEN_PATHS`).

It runs inside vLLM's API server process and imports nothing beyond the
standard library. The key is vLLM's own ``VLLM_API_KEY`` from the environment,
compared by digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

MIDDLEWARE = f"{__name__}.KeyGuard"  # plan/command.py names it as KEY_MIDDLEWARE
# Liveness, SageMaker's ping and Prometheus: open as documented (README "Security").
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics", "/metrics/"})
KEY_ENV = "VLLM_API_KEY"


class KeyGuard:
    def __init__(self, app: Any, key: str | None = None) -> None:
        self.app = app
        secret = key if key is not None else os.environ.get(KEY_ENV, "")
        if not secret:
            raise RuntimeError(f"{MIDDLEWARE}: {KEY_ENV} is empty; set API_KEY")
        self._digest = hashlib.sha256(secret.encode()).digest()

    def _allowed(self, scope: dict[str, Any]) -> bool:
        path = str(scope.get("path", "")).removeprefix(str(scope.get("root_path", "")))
        if path in OPEN_PATHS or scope.get("method") == "OPTIONS":
            return True
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), self._digest)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "Unauthorized"})
            return
        body = json.dumps({"error": "Unauthorized"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
