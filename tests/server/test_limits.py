"""The sidecar stays answerable under connections it cannot serve: a real sidecar
process with its file-descriptor limit at 128 and 200 half-open connections
(connected, sending nothing) held open against it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from server.limits import HEADER_TIMEOUT_S, RESERVED_FDS, connection_cap
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


def test_liveness_answers_through_two_hundred_half_open_connections(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        SIDECAR_HOST="127.0.0.1",
        SIDECAR_PORT=str(port),
        VLLM_URL=f"http://127.0.0.1:{free_port()}",  # no engine: liveness is the sidecar's own
        STATE_DIR=str(tmp_path / "state"),
    )
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
