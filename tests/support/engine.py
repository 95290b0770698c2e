"""Start ``spark-serve launch`` against the real CPU engine and wait for it."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.ports import bind_error

# The CPU build of vLLM is started as a module: its console script fails on
# package metadata. STAND-IN difference: --enforce-eager, so that no start pays for
# torch.compile of a model shape seen for the first time (30-50 s of the two cores each);
# what spark-serve plans and the engine serves is the same, only vLLM's compilation is not run.
CPU_ENGINE = f"{sys.executable} -m vllm.entrypoints.openai.api_server --enforce-eager --model {{model}}"
# No VLLM_CPU_KVCACHE_SPACE: it would override the planner's --kv-cache-memory-bytes.
CPU_ENGINE_ENV = {
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "2",
}


# STAND-IN difference, for time, where a test is about what the engine serves and not
# about its processes (the format, derived-profile and download tests): vLLM's engine
# core and its one worker run inside the API server's process
# (VLLM_ENABLE_V1_MULTIPROCESSING=0, --distributed-executor-backend uni). The same vLLM
# code on the same argv otherwise; a start takes about a third less (15 s against 22 s
# on an idle 2-core machine). The heal, container, stack, sidecar and two-host tests
# run vLLM's own three processes.
ONE_PROCESS_ENGINE = CPU_ENGINE.replace(
    "--enforce-eager", "--enforce-eager --distributed-executor-backend uni"
)
ONE_PROCESS_ENGINE_ENV = {**CPU_ENGINE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def tiny_engine_env(state_dir: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    """``spark-serve launch`` settings for the real CPU engine serving a tiny checkpoint as "tiny"."""
    from tests.conftest import clean_env

    settings = {
        "STATE_DIR": str(state_dir),
        "MODEL": str(checkpoint),
        "SERVED_MODEL_NAME": "tiny",
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "MAX_MODEL_LEN": "512",
        "ENGINE_COMMAND": CPU_ENGINE,
        **CPU_ENGINE_ENV,
    }
    return clean_env(**{**settings, **extra})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (ENGINE_PORT for MODELS: the engines,
    then the router's metrics), below the kernel's ephemeral range, so that neither an
    outgoing connection nor another test's :func:`free_port` takes one after this check."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    pick = random.Random()
    for _ in range(200):
        base = pick.randrange(10000, low - count)
        if all(bind_error("127.0.0.1", base + i) is None for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def http_json(
    url: str, body: Any = None, headers: Mapping[str, str] | None = None, timeout: float = 60
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_healthy(engine: Engine, deadline_s: float = 240) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if engine.proc.poll() is not None:
            raise AssertionError(f"engine exited with {engine.proc.returncode}:\n{engine.log_text()[-4000:]}")
        try:
            with urllib.request.urlopen(engine.url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"engine not healthy in {deadline_s}s:\n{engine.log_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], grace: float = 30) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def spawn_launch(env: Mapping[str, str], log: Path, args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``spark-serve launch`` in its own session (its process group is the engine's), output to ``log``."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "launch", *args],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def launched(env: Mapping[str, str], log: Path, args: tuple[str, ...] = ()) -> Iterator[Engine]:
    """``spark-serve launch`` with ``env``; yields once /health answers 200."""
    proc = spawn_launch(env, log, args)
    engine = Engine(proc, f"http://127.0.0.1:{int(env['PORT'])}", log)
    try:
        wait_healthy(engine)
        yield engine
    finally:
        stop(proc)


@dataclass
class Stream:
    """A streamed ``/v1/completions`` read in a thread: its chunks, and whether one arrived."""

    thread: threading.Thread
    chunks: list[dict[str, Any]]
    started: threading.Event
    error: BaseException | None = None  # what ended the reading otherwise (a refused connection)

    def finish_reasons(self) -> list[Any]:
        return [c["choices"][0].get("finish_reason") for c in self.chunks if c.get("choices")]

    def text_chunks(self) -> int:
        """Chunks that carried text: 0 for a request refused or aborted before its first token."""
        return sum(1 for c in self.chunks if c.get("choices") and c["choices"][0].get("text"))


def stream_completion(url: str, body: Mapping[str, Any], timeout: float = 120) -> Stream:
    """POST ``body`` (with ``stream``) to ``url``/v1/completions and read it in a thread."""
    request = urllib.request.Request(
        url + "/v1/completions",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"content-type": "application/json"},
    )
    stream = Stream(threading.Thread(target=lambda: None), [], threading.Event())

    def read() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                for raw in response:
                    line = raw.decode().strip()
                    if line.startswith("data: {"):
                        stream.chunks.append(json.loads(line[6:]))
                        stream.started.set()
        except (OSError, ValueError) as err:  # refused, reset or cut: the chunks say how far it got
            stream.error = err

    stream.thread = threading.Thread(target=read)
    stream.thread.start()
    return stream
