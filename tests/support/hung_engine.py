"""A stand-in for a hung vLLM: the real engine cannot be made to hang on demand
in a way that keeps ``/health`` 200 and its model listed (what a hung engine on
a Spark does), so this one does.

It answers ``/health``, ``/v1/models``, ``/version`` and ``/metrics`` like vLLM.
Generations hang while ``--hang-file`` exists (bounded: at most 120 s) and are
answered otherwise; with ``--no-chat-template`` chat completions answer 400 as
vLLM does for a model without one. Every generation request's path, model,
``X-Request-Id`` and ``User-Agent`` are appended to ``--requests`` (JSON lines).
SIGTERM writes ``SIGTERM`` to ``--signals`` and exits 0 (a drained engine).

Run: python -m tests.support.hung_engine --port P --model M --hang-file F --requests R --signals S
(or :func:`stand_in` from a test).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HANG_LIMIT_S = 120.0
LIFETIME_S = 600.0


def make_handler(args: argparse.Namespace, answered: list[int]) -> type[BaseHTTPRequestHandler]:
    hang_file, log = Path(args.hang_file), Path(args.requests)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: Any, kind: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, "", "text/plain")
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": args.model, "object": "model"}]})
            elif self.path == "/version":
                self._send(200, {"version": "stand-in"})
            elif self.path == "/metrics":
                text = (
                    "# TYPE vllm:num_requests_running gauge\n"
                    f'vllm:num_requests_running{{model_name="{args.model}"}} 0.0\n'
                    "# TYPE vllm:request_success counter\n"
                    f'vllm:request_success_total{{finished_reason="length",model_name="{args.model}"}} '
                    f"{answered[0]}.0\n"
                )
                self._send(200, text, "text/plain; version=0.0.4")
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            entry = {
                "path": self.path,
                "model": body.get("model"),
                "max_tokens": body.get("max_tokens"),
                "request_id": self.headers.get("X-Request-Id"),
                "user_agent": self.headers.get("User-Agent"),
                "hung": hang_file.exists(),
            }
            with log.open("a") as sink:
                sink.write(json.dumps(entry) + "\n")
            if self.path == "/v1/chat/completions" and args.no_chat_template:
                self._send(400, {"error": {"message": "this model has no chat template"}})
                return
            deadline = time.monotonic() + HANG_LIMIT_S
            while hang_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            answered[0] += 1
            tokens = int(body.get("max_tokens") or 1)
            self._send(200, {"choices": [{"index": 0}], "usage": {"completion_tokens": tokens}})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--port", "--model", "--hang-file", "--requests", "--signals"):
        parser.add_argument(name, required=True)
    parser.add_argument("--no-chat-template", action="store_true")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = ThreadingHTTPServer(("127.0.0.1", int(args.port)), make_handler(args, [0]))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + LIFETIME_S  # never outlives a test that lost track of it
    while not stop.wait(0.2) and time.monotonic() < deadline:
        pass
    if stop.is_set():
        Path(args.signals).write_text("SIGTERM\n")
    server.shutdown()


@dataclass
class StandIn:
    proc: subprocess.Popen[bytes]
    url: str
    hang_file: Path
    requests: Path
    signals: Path

    def generations(self) -> list[dict[str, Any]]:
        if not self.requests.exists():
            return []
        return [json.loads(line) for line in self.requests.read_text().splitlines()]


@contextmanager
def stand_in(
    tmp: Path, port: int, model: str, *, hung: bool, no_chat_template: bool = False
) -> Iterator[StandIn]:
    """Run the stand-in on ``port`` serving ``model``; generations hang from the start when ``hung``."""
    tmp.mkdir(parents=True, exist_ok=True)
    hang_file, requests, signals = tmp / "hang", tmp / "requests.jsonl", tmp / "signals"
    if hung:
        hang_file.touch()
    argv = [sys.executable, "-m", "tests.support.hung_engine", "--port", str(port), "--model", model]
    argv += ["--hang-file", str(hang_file), "--requests", str(requests), "--signals", str(signals)]
    argv += ["--no-chat-template"] if no_chat_template else []
    proc = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[2])
    engine = StandIn(proc, f"http://127.0.0.1:{port}", hang_file, requests, signals)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(engine.url + "/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the stand-in engine did not start") from None
                time.sleep(0.1)
        yield engine
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
