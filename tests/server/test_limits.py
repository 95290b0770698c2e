"""The sidecar stays answerable under connections it cannot serve (a real sidecar
process with its file-descriptor limit at 128 and 200 half-open connections held
open against it), and never closes an idle keep-alive connection a client may be
reusing at that moment, while a request whose headers stall is still dropped."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

from server.limits import HEADER_TIMEOUT_S, KEEP_ALIVE_S, RESERVED_FDS, connection_cap
from tests.conftest import clean_env
from tests.support.engine import free_port
from tests.support.sidecar import get, sidecar

HALF_OPEN = 200
NOFILE = 128


def _live(url: str) -> int:
    try:
        return get(url + "/health/live", timeout=5)[0]
    except OSError:
        return 0


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap(128) == 128 - RESERVED_FDS
    assert connection_cap(40) == 8 and connection_cap(1 << 20) == 4096


def _env(port: int, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        SIDECAR_HOST="127.0.0.1",
        SIDECAR_PORT=str(port),
        VLLM_URL=f"http://127.0.0.1:{free_port()}",  # no engine: liveness is the sidecar's own
        STATE_DIR=str(tmp_path / "state"),
    )


def _answered(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/health/live")
    response = conn.getresponse()
    response.read()
    return response.status


def test_liveness_answers_through_two_hundred_half_open_connections(tmp_path: Path) -> None:
    port = free_port()
    env = _env(port, tmp_path)
    held: list[socket.socket] = []
    with sidecar(env, tmp_path / "sidecar.log", nofile=NOFILE) as url:
        try:
            for _ in range(HALF_OPEN):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(1.0)  # the sidecar accepts them all (the cap evicts the oldest idle ones)
            codes = [_live(url) for _ in range(20)]
            # Beyond the header timeout every one of them is dropped, and liveness still answers.
            time.sleep(HEADER_TIMEOUT_S + 1)
            late = [_live(url) for _ in range(5)]
            closed = 0
            for sock in held:
                sock.settimeout(0.5)
                try:
                    closed += sock.recv(1) == b""
                except OSError:
                    closed += 1
        finally:
            for sock in held:
                sock.close()
        assert get(url + "/health/live")[0] == 200
    log = (tmp_path / "sidecar.log").read_text()
    assert codes.count(200) == len(codes), codes
    assert late == [200] * 5 and closed == HALF_OPEN
    assert "Too many open files" not in log and "Traceback" not in log, log[-2000:]


def test_an_idle_keep_alive_connection_is_kept_while_a_stalled_request_is_dropped(
    tmp_path: Path,
) -> None:
    """Past uvicorn's 5 s default and the header timeout, a client reusing its
    connection is answered on it; one that sent half a request's headers is closed."""
    assert KEEP_ALIVE_S > 60 > HEADER_TIMEOUT_S  # longer than load balancers keep theirs
    port = free_port()
    with sidecar(_env(port, tmp_path), tmp_path / "sidecar.log"):
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        stalled = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            assert _answered(kept) == _answered(stalled) == 200
            reused = kept.sock
            assert stalled.sock is not None
            stalled.sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: sidecar\r\n")  # never ends
            time.sleep(HEADER_TIMEOUT_S + 1)
            assert _answered(kept) == 200 and kept.sock is reused
            stalled.sock.settimeout(2)
            assert stalled.sock.recv(1) == b""
        finally:
            kept.close()
            stalled.close()
