"""The sidecar stays answerable: a bound on connections below its file-descriptor
limit, and no time for a client that does not send its request.

uvicorn has neither a connection cap nor a timeout for a request's headers, so
half-open connections (a port scan, a stuck client, a slowloris) can take every
descriptor the sidecar has, after which ``/health/live`` itself fails. Here:

- at most :func:`connection_cap` connections: a new one beyond it evicts the
  connection idle longest (no request in progress; else it is closed at once);
- a connection that has not sent a complete request's headers within
  :data:`HEADER_TIMEOUT_S` of connecting, or of the first bytes of its next
  request, is closed;
- an idle keep-alive connection is closed after :data:`KEEP_ALIVE_S`, longer
  than the idle expiry of the clients that reuse connections (httpx 5 s,
  aiohttp 15 s, load balancers 60 s). A server that closes first races the
  client's next request on that connection, and a busy or starved sidecar
  loses that race often: its idle clock starts when the answer is written, the
  client's when it has read it (uvicorn's default 5 s against httpx's 5 s
  drops requests under load). The cap, not the idle timeout, bounds descriptors.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 75  # nginx's default; uvicorn takes whole seconds
RESERVED_FDS = 48  # outbound connections to vLLM, state files, NVML, the event loop
MAX_CONNECTIONS = 4096


def connection_cap(soft_limit: int | None = None) -> int:
    """Connections the sidecar accepts at once: its descriptor limit less what it needs itself."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(soft_limit - RESERVED_FDS, MAX_CONNECTIONS))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the cap and the header timeout."""

    cap = MAX_CONNECTIONS
    header_timeout = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_since = 0.0
        self._header_timer: asyncio.TimerHandle | None = None

    def _idle(self) -> bool:
        """No request in progress: none yet, or the last one answered."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.cap:
            idle = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c._idle()]
            if not idle:
                transport.close()
                return
            min(idle, key=lambda c: c._idle_since).transport.close()
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self._idle() and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self.cycle is not None:  # a request's headers arrived
            self._disarm()
        elif self._idle():
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.transport is not None:
            super().connection_lost(exc)


def guarded_protocol(cap: int, header_timeout: float = HEADER_TIMEOUT_S) -> type[GuardedH11Protocol]:
    return type("Guarded", (GuardedH11Protocol,), {"cap": cap, "header_timeout": header_timeout})
