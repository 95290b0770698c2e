"""``spark-serve sidecar``: bind first (a clear error if the port is taken), then serve
with a bound on connections, a header timeout and a keep-alive longer than its
clients' (:mod:`server.limits`)."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from entrypoint.errors import ExitCode, SparkServeError

from .settings import load_settings


class SidecarBindError(SparkServeError, OSError):
    exit_code = ExitCode.SIDECAR_BIND

    def __init__(self, host: str, port: int, detail: str) -> None:
        super().__init__(
            f"SIDECAR_PORT: cannot listen on {host}:{port}: {detail}",
            fix="free the port or set SIDECAR_PORT to another one",
        )


def run(env: Mapping[str, str], cli: Mapping[str, str | None]) -> int:
    import uvicorn

    from .app import create_app
    from .limits import KEEP_ALIVE_S, connection_cap, guarded_protocol

    settings = load_settings(env, cli)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.sidecar_host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.sidecar_host, settings.sidecar_port))
    except OSError as err:
        sock.close()
        raise SidecarBindError(
            settings.sidecar_host, settings.sidecar_port, err.strerror or str(err)
        ) from err
    cap = connection_cap()
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=guarded_protocol(cap),
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=min(cap, 2048),
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0
