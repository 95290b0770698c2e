"""Two hosts (network namespaces over a veth link), real Ray, the real launcher.

The CPU build of vLLM cannot run its Ray executor (its platform has no Ray
device key), so the engine itself runs on the head alone: these tests pass
``VLLM_EXTRA_ARGS=--distributed-executor-backend mp --tensor-parallel-size 1``,
which vLLM takes over the cluster flags because it comes last. Everything else
is the real thing across the two hosts: the Ray head and worker, the labels,
the head's wait, the revision check, the watcher and the sidecar's view.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.errors import ExitCode
from tests.conftest import clean_env, run_cli
from tests.support.checkpoints import bf16_llama
from tests.support.engine import free_port, tiny_engine_env
from tests.support.netns import BIN, Host, netns_unavailable, two_hosts

_why = netns_unavailable() or (
    None if shutil.which("ray", path=BIN) else "Ray is not installed in the test environment"
)
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

SPARK_SERVE = [sys.executable, "-m", "entrypoint"]
# Ray's own knobs, read from the environment by `ray start`: a lost node is declared in seconds.
FAST_HEALTH = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bf16_llama(tmp_path_factory.mktemp("cluster") / "ckpt")


@pytest.fixture()
def hosts() -> Iterator[tuple[Host, Host]]:
    with two_hosts() as pair:
        yield pair


def _token(root: Path, name: str = "ray-token") -> str:
    path = root / name
    if not path.exists():
        assert run_cli(["cluster-token", str(path)], clean_env()).code == 0
    return str(path)


def _env(host: Host, head: Host, root: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    extra.setdefault("CLUSTER_TOKEN_FILE", _token(root))
    env = tiny_engine_env(
        root / f"state-{host.ns}",
        checkpoint,
        CLUSTER_NODES="2",
        CLUSTER_HEAD=head.ip,
        CLUSTER_INTERFACE=host.iface,
        CLUSTER_PORT="6390",
        VLLM_EXTRA_ARGS="--distributed-executor-backend mp --tensor-parallel-size 1",
        **FAST_HEALTH,
        **extra,
    )
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["HOST"] = "0.0.0.0"
    return env


def _finish(proc: Any, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is not None, f"still running after {seconds}s"
    return int(proc.returncode)


def _ray_daemons(host: Host) -> list[str]:
    """Ray's daemons running in ``host``'s network namespace."""
    names = []
    for pid in subprocess.run(
        ["ip", "netns", "pids", host.ns], capture_output=True, text=True
    ).stdout.split():
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return [n for n in names if n in ("raylet", "gcs_server")]


def test_a_worker_that_never_joins_ends_the_head_with_a_reason_and_no_ray_left(
    hosts: tuple[Host, Host], checkpoint: Path, tmp_path: Path
) -> None:
    a, _ = hosts
    env = _env(a, a, tmp_path, checkpoint, CLUSTER_JOIN_TIMEOUT_S="8")
    head = a.spawn([*SPARK_SERVE, "launch"], env, tmp_path / "head.log")
    code = _finish(head, 120)
    log = (tmp_path / "head.log").read_text()
    assert code == ExitCode.CLUSTER_JOIN_TIMEOUT, log[-3000:]
    assert f"1 of 1 workers never joined the head at {a.ip} in 8s" in log
    assert f"CLUSTER_HEAD={a.ip}" in log and "Traceback" not in log
    state = json.loads((tmp_path / f"state-{a.ns}" / "launcher.json").read_text())
    assert state["phase"] == "failed" and "never joined" in state["error"]
    cluster = json.loads((tmp_path / f"state-{a.ns}" / "cluster.json").read_text())
    assert (cluster["expected"], cluster["joined"]) == (2, 1)
    assert _ray_daemons(a) == []  # the head's Ray was stopped: nothing half-started


def test_a_cluster_start_without_a_token_refuses_before_anything_starts(
    hosts: tuple[Host, Host], checkpoint: Path, tmp_path: Path
) -> None:
    a, b = hosts
    for host, command in ((a, "launch"), (b, "worker")):
        env = _env(host, a, tmp_path, checkpoint, CLUSTER_TOKEN_FILE=str(tmp_path / "none"))
        proc = host.spawn([*SPARK_SERVE, command], env, tmp_path / f"{command}.log")
        assert _finish(proc, 60) == ExitCode.CLUSTER_TOKEN
        log = (tmp_path / f"{command}.log").read_text()
        assert f"CLUSTER_TOKEN_FILE={tmp_path / 'none'}: no Ray token: No such file or directory" in log, log
        assert "Traceback" not in log and _ray_daemons(host) == []


def test_a_node_without_the_token_cannot_join_and_one_with_it_can(
    hosts: tuple[Host, Host], checkpoint: Path, tmp_path: Path
) -> None:
    """The Ray head runs with token auth: `ray start` with another token, or with none at all,
    does not join it; the same `ray start` with the head's token does."""
    a, b = hosts
    env = _env(a, a, tmp_path, checkpoint, CLUSTER_JOIN_TIMEOUT_S="300")
    head = a.spawn([*SPARK_SERVE, "launch"], env, tmp_path / "head.log")
    deadline = time.monotonic() + 120
    while "waiting for 1 worker(s) to join" not in (tmp_path / "head.log").read_text():
        assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()
        time.sleep(0.5)
    bare = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    join = ["ray", "start", "--address", f"{a.ip}:6390", "--node-ip-address", b.ip, "--disable-usage-stats"]
    wrong = {**bare, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": _token(tmp_path, "other-token")}
    for attempt in (bare, wrong):
        done = subprocess.run(b.argv(join), env=attempt, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, done.stdout[-2000:] + done.stderr[-2000:]
        b.kill_all()  # whatever it left
    state = json.loads((tmp_path / f"state-{a.ns}" / "cluster.json").read_text())
    assert state["joined"] == 1 and [n["ip"] for n in state["nodes"]] == [a.ip]
    right = {**bare, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": _token(tmp_path)}
    done = subprocess.run(b.argv(join), env=right, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # A node that is no `spark-serve worker` is refused by the head, as before.
    assert _finish(head, 60) == ExitCode.CLUSTER_MISMATCH
    assert "joined the Ray cluster without `spark-serve worker`" in (tmp_path / "head.log").read_text()


def test_a_worker_with_another_checkpoint_is_refused_before_the_engine_starts(
    hosts: tuple[Host, Host], checkpoint: Path, tmp_path: Path
) -> None:
    a, b = hosts
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    (other / "generation_config.json").write_text(json.dumps({"max_new_tokens": 7}))
    worker = b.spawn([*SPARK_SERVE, "worker"], _env(b, a, tmp_path, other), tmp_path / "worker.log")
    head = a.spawn([*SPARK_SERVE, "launch"], _env(a, a, tmp_path, checkpoint), tmp_path / "head.log")
    code = _finish(head, 180)
    log = (tmp_path / "head.log").read_text()
    assert code == ExitCode.CLUSTER_MISMATCH, log[-3000:] + (tmp_path / "worker.log").read_text()[-2000:]
    assert f"worker {b.ip}: holds another checkpoint than the head" in log
    assert "vllm.entrypoints" not in log  # refused before exec
    assert "checkpoint verified (local); joining the Ray head" in (tmp_path / "worker.log").read_text()
    assert worker.pid  # its `ray start --block` ends once the head's Ray is gone (compose restarts it)


@pytest.mark.engine
def test_two_hosts_form_one_server_and_a_lost_worker_ends_the_head(
    hosts: tuple[Host, Host], checkpoint: Path, tmp_path: Path
) -> None:
    a, b = hosts
    env = _env(a, a, tmp_path, checkpoint, SIDECAR_PORT=str(free_port()))
    head = a.spawn([*SPARK_SERVE, "launch"], env, tmp_path / "head.log")
    a.spawn([*SPARK_SERVE, "sidecar"], env, tmp_path / "sidecar.log")
    b.spawn([*SPARK_SERVE, "worker"], _env(b, a, tmp_path, checkpoint), tmp_path / "worker.log")
    sidecar = f"http://127.0.0.1:{env['SIDECAR_PORT']}"

    def fetch(path: str) -> str:
        code = f"import urllib.request as u; print(u.urlopen('{sidecar}{path}', timeout=5).read().decode())"
        return a.run([sys.executable, "-c", code])

    def status() -> dict[str, Any]:
        try:
            return dict(json.loads(fetch("/status")))
        except ValueError:
            return {}

    deadline = time.monotonic() + 400
    while not status().get("ready") and time.monotonic() < deadline:
        assert head.poll() is None, (tmp_path / "head.log").read_text()[-4000:]
        time.sleep(2)
    doc = status()
    assert doc.get("ready"), json.dumps(doc)[:2000] + (tmp_path / "head.log").read_text()[-3000:]
    nodes = {(n["ip"], n["role"], n["phase"]) for n in doc["cluster"]["nodes"]}
    assert nodes == {(a.ip, "head", "joined"), (b.ip, "worker", "joined")}
    argv = doc["argv"]
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"  # the cluster's flags, then ours
    metrics = fetch("/metrics")
    assert 'sparkserve_cluster_nodes{state="joined"} 2.0' in metrics
    assert f'sparkserve_cluster_node_up{{node="{b.ip}",role="worker"}} 1.0' in metrics

    b.unplug()  # the cable is pulled
    code = _finish(head, 90)
    log = (tmp_path / "head.log").read_text()
    assert f"worker {b.ip} lost: ending the engine so the head restarts" in log
    assert code is not None
    cluster = json.loads((tmp_path / f"state-{a.ns}" / "cluster.json").read_text())
    assert cluster["phase"] == "lost" and cluster["error"] == f"worker {b.ip} lost"
    until_not_ready = time.monotonic() + 30
    while status().get("ready") is not False and time.monotonic() < until_not_ready:
        time.sleep(1)
    after = status()
    assert after.get("ready") is False and "lost" in json.dumps(after), json.dumps(after)[:1500]
