"""The key on every route (entrypoint/engine/keyguard.py), as an ASGI app sees it; the real
engine's every route is checked in tests/test_engine.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from entrypoint.engine.keyguard import MIDDLEWARE, OPEN_PATHS, KeyGuard
from entrypoint.plan.command import KEY_MIDDLEWARE


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(guard: KeyGuard, path: str, headers: Sequence[tuple[bytes, bytes]] = (), **scope: Any) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request"}

    full = {"type": "http", "path": path, "method": "POST", "headers": list(headers), **scope}
    asyncio.run(guard(full, receive, send))
    return sent


def test_every_path_but_the_open_ones_needs_the_bearer_key() -> None:
    guard = KeyGuard(_app, "s3cret")
    for path in ("/invocations", "/v1/chat/completions", "/tokenize", "/docs", "/openapi.json", "/", "/x"):
        assert _call(guard, path)[0]["status"] == 401, path
        assert _call(guard, path, [(b"authorization", b"Bearer wrong")])[0]["status"] == 401
        assert _call(guard, path, [(b"authorization", b"Basic s3cret")])[0]["status"] == 401
        assert _call(guard, path, [(b"Authorization", b"Bearer s3cret")])[0]["status"] == 200
    for path in OPEN_PATHS:
        assert _call(guard, path)[0]["status"] == 200, path
    assert _call(guard, "/invocations", method="OPTIONS")[0]["status"] == 200  # CORS preflight
    assert _call(guard, "/api/invocations", root_path="/api")[0]["status"] == 401
    denied = _call(guard, "/v1/realtime", type="websocket")
    assert denied == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]


def test_it_reads_vllms_variable_and_refuses_to_run_without_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    assert _call(KeyGuard(_app), "/x", [(b"authorization", b"Bearer from-env")])[0]["status"] == 200
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(RuntimeError, match="VLLM_API_KEY"):
        KeyGuard(_app)
    assert KEY_MIDDLEWARE == MIDDLEWARE  # the import path the launcher passes to --middleware
