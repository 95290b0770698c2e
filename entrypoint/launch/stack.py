"""``spark-serve launch`` with ``MODELS``: the set planned together, downloaded, then its
engines started one at a time behind one router, and supervised.

Before any weight byte the set is planned (:mod:`entrypoint.inputs.stack`) and refused
if it does not fit; then every checkpoint is downloaded and verified. Each engine is
``spark-serve launch`` for its one model, with its own environment (port on 127.0.0.1,
state folder, and the joint plan's ``KV_CACHE_MEMORY_BYTES``): its back-off, memory
guard, halt, record and exec are the one-model launch's, so the sidecar heals each
engine by its own state. The next engine starts once the one before answers
``/health``, so each start check sees the memory the ones before hold.

The router is vLLM's ``vllm-router`` in its multi-model mode (``--enable-igw``) on
HOST:PORT: each engine is registered by its served model name once it is up, and the
router sends a request to the engine whose name its ``model`` field carries.

An engine that ends is started again (its own launch waits out its back-off); the
others go on. SIGTERM or SIGINT only sets a flag: the supervisor then sends SIGTERM
to every engine and the router, waits for their drain, and exits 0. A router that
ends ends the set (the container's restart policy brings it back).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineNotFoundError, PortInUseError
from ..inputs.stack import Engine, Stack, listeners, metrics_port
from ..plan.options import BY_NAME, option_value
from ..plan.stack import MAX_MODELS
from ..ports import bind_error
from ..state import STACK_FILE, share_with_group, write_document
from .guard import Runtime, say

POLL_S = 1.0
RESPAWN_S = 2.0  # between an engine's end and its next launch (whose own back-off then applies)


def router_argv(env: Mapping[str, str], command: Sequence[str]) -> list[str]:
    host = option_value(BY_NAME["host"], env, {})
    port = option_value(BY_NAME["port"], env, {})
    metrics = metrics_port(env)
    return [
        *command,
        "--host", str(host), "--port", str(port), "--enable-igw", "--policy", "round_robin",
        "--health-check-interval-secs", "5", "--health-check-endpoint", "/health",
        "--health-success-threshold", "1", "--cb-timeout-duration-secs", "10",
        "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics),
        "--request-timeout-secs", "3600", "--log-level", "warning",
    ]  # fmt: skip


def engine_env(engine: Engine) -> dict[str, str]:
    memory = engine.chained.memory
    env = dict(engine.env)
    if memory is not None and memory.explicit_kv:
        env["KV_CACHE_MEMORY_BYTES"] = str(memory.kv_cache_bytes)  # the joint plan's share
    return env


def stack_document(stack: Stack, env: Mapping[str, str]) -> dict[str, Any]:
    """What the sidecar reads to watch every engine (STATE_DIR/stack.json)."""
    return {
        "router_port": option_value(BY_NAME["port"], env, {}),
        "started_at": time.time(),
        "engines": [
            {"name": e.name, "port": e.port, "state_dir": e.state_dir, "model": e.entry.model}
            for e in stack.engines
        ],
        "joint": stack.joint.to_json() if stack.joint else None,
    }


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def register(router_port: int, engine: Engine) -> bool:
    """Tell the router the engine's URL and its served name (no call to the engine:
    with API_KEY its /v1/models wants the key)."""
    body = json.dumps({"url": f"http://127.0.0.1:{engine.port}", "model_id": engine.name}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{router_port}/workers", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def ended(proc: subprocess.Popen[bytes]) -> None:
    """An engine's API server has ended: end what it left in its process group (an API
    server killed by SIGKILL or the OOM killer leaves its engine core and workers
    running, holding the model's memory)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Child:
    engine: Engine
    proc: subprocess.Popen[bytes] | None = None
    registered: bool = False
    starts: int = 0


@dataclass
class Supervisor:
    stack: Stack
    env: Mapping[str, str]
    launch_command: Sequence[str] = (sys.executable, "-m", "entrypoint", "launch")
    router_command: Sequence[str] = ("vllm-router",)
    runtime: Runtime = field(default_factory=Runtime)
    children: list[Child] = field(default_factory=list)
    router: subprocess.Popen[bytes] | None = None

    def spawn(self, child: Child) -> None:
        child.starts += 1
        say(f"engine {child.engine.name}: start {child.starts} on 127.0.0.1:{child.engine.port}")
        # Its own process group: vLLM's engine core and workers stay in it, so an API server
        # that was killed leaves nothing behind once the group is ended (see ended()).
        child.proc = subprocess.Popen(
            list(self.launch_command), env=engine_env(child.engine), start_new_session=True
        )

    def start_router(self) -> None:
        argv = router_argv(self.env, self.router_command)
        say(f"router: {' '.join(argv)}")
        self.router = subprocess.Popen(argv, env=dict(self.env))

    def step(self) -> bool:
        """One pass: respawn what ended, start the next engine once the ones before are
        up, register what came up. False when the router ended."""
        if self.router is not None and self.router.poll() is not None:
            say(f"router ended ({self.router.returncode}): ending every engine")
            return False
        router_port = option_value(BY_NAME["port"], self.env, {})
        for child in self.children:
            if child.proc is None:
                self.spawn(child)
                return True  # one at a time: the next waits for this one's /health
            if child.proc.poll() is not None:
                say(f"engine {child.engine.name} ended ({child.proc.returncode}); starting it again")
                ended(child.proc)
                self.runtime.sleep(RESPAWN_S)
                self.spawn(child)
                return True
            if not child.registered:
                if not _healthy(child.engine.port):
                    return True  # the next engines wait
                child.registered = register(router_port, child.engine)
                if child.registered:
                    say(f"engine {child.engine.name} is up and routed")
        return True

    def stop_all(self) -> None:
        """SIGTERM to every engine (vLLM drains) and the router; what outlives the drain,
        and whatever an engine left in its group, is killed."""
        procs = [c.proc for c in self.children if c.proc is not None] + ([self.router] if self.router else [])
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        drain = max(int(c.engine.chained.plan.value("shutdown_timeout") or 0) for c in self.children) + 30
        deadline = time.monotonic() + drain
        for proc in procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self.children:
            if child.proc is not None:
                ended(child.proc)

    def run(self) -> int:
        self.children = [Child(e) for e in self.stack.engines]
        with self.runtime.signals():
            self.start_router()
            try:
                while not self.runtime.stop.is_set() and self.step():
                    self.runtime.stop.wait(POLL_S)
            except Exception:
                self.stop_all()
                raise
        stopped = self.runtime.stop.is_set()
        say("stopping every engine and the router" if stopped else "the router ended")
        self.stop_all()
        return 0 if stopped else 1


def free_ports(stack: Stack, env: Mapping[str, str]) -> None:
    """Every port the set listens on is free, before any weight byte or process: a taken
    one would leave the set half-started (its engine in a crash loop)."""
    for at in listeners(stack, env):
        err = bind_error(at.host, at.port)
        if err is None:
            continue
        fix = f"stop what holds port {at.port}, or set {at.variable} to a free port"
        if at.variable == "ENGINE_PORT":
            fix += f" (the engines and the router's metrics take ENGINE_PORT to ENGINE_PORT+{MAX_MODELS})"
        raise PortInUseError(at.variable, at.what, f"{at.host}:{at.port}", err.strerror or str(err), fix)


def launch_stack(env: Mapping[str, str], cli: Mapping[str, Any]) -> int:
    """Plan (refusing what does not fit), download every checkpoint, then supervise."""
    from ..inputs.gather import for_launch
    from ..inputs.stack import plan_stack
    from .run import download

    stack = plan_stack(env, cli, for_launch, refuse=True)
    command = option_value(BY_NAME["router_command"], env, cli)
    if shutil.which(command[0], path=env.get("PATH")) is None:  # before any weight byte
        raise EngineNotFoundError(command[0], "ROUTER_COMMAND", "vllm-router")
    free_ports(stack, env)
    for engine in stack.engines:
        say(f"engine {engine.name}: checkpoint {download(engine.chained)}")
    state_dir = option_value(BY_NAME["state_dir"], env, cli)
    os.makedirs(state_dir, exist_ok=True)
    share_with_group(state_dir)
    write_document(state_dir, STACK_FILE, stack_document(stack, env))
    return Supervisor(stack, env, router_command=command).run()
