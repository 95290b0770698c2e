"""Whether a TCP port can be listened on: bound as vLLM's and the router's servers bind
it (``SO_REUSEADDR``, so a port in TIME_WAIT counts as free), then closed at once."""

from __future__ import annotations

import socket


def bind_error(host: str, port: int) -> OSError | None:
    """None when ``host:port`` can be listened on now; else why not (``errno`` set)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError as err:
            return err
    return None
