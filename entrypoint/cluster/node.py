"""The Ray side of a cluster: start the head, wait for workers, run a worker.

Thin: the decisions are in :mod:`.plan` and :mod:`.members`. Ray itself is
imported only here, and only by the commands that form a cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..errors import ClusterRayError, ClusterTokenError, SecretUnreadableError, SparkServeError
from ..plan.resolve import Plan
from ..secrets import read_secret_file
from ..state import CLUSTER_FILE, write_document
from .members import Membership, Node, nodes_from_ray, wait_for_workers
from .net import read_interfaces, read_rdma_devices
from .plan import ClusterPlan, plan_cluster, role_for

Exec = Callable[[str, list[str], dict[str, str]], Any]


def host_cluster(plan: Plan, role: str | None, environ: Mapping[str, str]) -> ClusterPlan:
    """The cluster plan for this host: its interfaces and RDMA devices, read now. With no
    ``role``, head when CLUSTER_HEAD is one of this host's addresses, else worker."""
    unified = plan.device is not None and plan.device.memory == "unified"
    interfaces = read_interfaces()
    role = role or role_for(interfaces, str(plan.value("cluster_head") or ""))
    cluster = plan_cluster(plan, role, interfaces, read_rdma_devices(), environ, unified)
    check_token(cluster.token_file)
    return cluster


def check_token(path: str) -> None:
    """The Ray token file can be read and holds a token; else one line, before anything starts."""
    fix = (
        "make one with `spark-serve cluster-token PATH` on the head and copy it to every Spark "
        "(compose: ./secrets/ray_token, readable by group 990; else set CLUSTER_TOKEN_FILE to it)"
    )
    try:
        token = read_secret_file("CLUSTER_TOKEN_FILE", path)
    except SecretUnreadableError as err:
        raise ClusterTokenError(path, f"no Ray token: {err.detail}", fix) from err
    if len(token) < 16:
        raise ClusterTokenError(path, "no Ray token: it is under 16 characters", fix)


def new_token() -> str:
    """A fresh Ray token: 32 random bytes, hex (what ``ray get-auth-token --generate`` makes)."""
    import secrets

    return secrets.token_hex(32)


def _ray(environ: Mapping[str, str]) -> str:
    found = shutil.which("ray", path=environ.get("PATH"))
    if found is None:
        raise ClusterRayError(
            "the `ray` command is not installed, and CLUSTER_NODES > 1 needs it",
            "use the spark-serve image (it has Ray), or `pip install 'ray[default]'` beside vLLM",
        )
    return found


def auth_env(cluster: ClusterPlan) -> dict[str, str]:
    return {k: str(cluster.env[k].value) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}


def ray_env(cluster: ClusterPlan, environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(environ)
    env.update({k: str(s.value) for k, s in cluster.env.items()})
    return env


def _ray_start(cluster: ClusterPlan, labels: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """This node's ``ray start`` argv, with the installed ``ray`` found on PATH."""
    return [_ray(environ), *cluster.ray_start_argv(labels)[1:]]


def start_head(cluster: ClusterPlan, labels: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """``ray start --head``: Ray's daemons start and the command returns."""
    argv = _ray_start(cluster, labels, environ)
    try:
        done = subprocess.run(
            argv, env=ray_env(cluster, environ), capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired as err:
        raise ClusterRayError(
            f"`ray start --head` on {cluster.node_ip}:{cluster.port} did not finish in 180s",
            "see `ray status`; stop a Ray left from an earlier run with `ray stop` and start again",
        ) from err
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ClusterRayError(
            f"`ray start --head` on {cluster.node_ip}:{cluster.port} failed: {last[0]}",
            "free CLUSTER_PORT or choose another, and stop a Ray left from an earlier run (`ray stop`)",
        )


def stop_ray(environ: Mapping[str, str]) -> None:
    """``ray stop``: end this node's Ray daemons (a head whose cluster did not form)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, SparkServeError):
        subprocess.run([_ray(environ), "stop", "--force"], capture_output=True, timeout=60, env=dict(environ))


class RayNodes:
    """Reads ``ray.nodes()`` through one driver connection to the head."""

    def __init__(self, address: str, auth: Mapping[str, str] | None = None) -> None:
        self.address = address
        self.auth = dict(auth or {})
        self._connected = False

    def __call__(self) -> list[Node]:
        if not self._connected:
            self._connect()
        import ray

        return nodes_from_ray(ray.nodes())

    def _connect(self) -> None:
        # Ray reads its authentication settings from this process's environment.
        os.environ.update(self.auth)
        import ray

        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
        try:
            ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ClusterRayError(
                f"cannot reach the Ray head at {self.address}: {first}",
                "check that the head is up (`ray status --address ...`) and CLUSTER_PORT is open",
            ) from err
        self._connected = True

    def close(self) -> None:
        if self._connected:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
            self._connected = False


def head_wait(
    cluster: ClusterPlan,
    state_dir: str,
    timeout_s: float,
    report: Callable[[Membership], None],
) -> Membership:
    """Wait for every worker; the membership goes to ``cluster.json`` as it changes."""
    reader = RayNodes(cluster.address, auth_env(cluster))
    seen: list[tuple[str, bool]] = []

    def record(members: Membership) -> None:
        now = [(n.ip, n.alive) for n in members.nodes]
        if now != seen:
            seen[:] = now
            write_document(state_dir, CLUSTER_FILE, members.to_json("waiting-for-workers"))
            report(members)

    try:
        members = wait_for_workers(reader, cluster.nodes, cluster.node_ip, timeout_s, record)
    finally:
        reader.close()
    write_document(state_dir, CLUSTER_FILE, members.to_json("joined"))
    return members


def spawn_watcher(
    cluster: ClusterPlan, state_dir: str, environ: Mapping[str, str], members: Sequence[str]
) -> None:
    """Start the membership watcher beside the engine: this process's PID becomes vLLM's
    at exec, and the watcher ends it (SIGTERM) if one of ``members`` (the nodes that
    formed the cluster) is lost; another node that comes and goes changes nothing."""
    argv = [
        sys.executable,
        "-m",
        "entrypoint.cluster.watch",
        "--address",
        cluster.address,
        "--expected",
        str(cluster.nodes),
        "--state-dir",
        state_dir,
        "--engine-pid",
        str(os.getpid()),
        *(word for ip in members for word in ("--member", ip)),
    ]
    subprocess.Popen(argv, env=ray_env(cluster, environ), stdin=subprocess.DEVNULL, close_fds=True)


def exec_worker(
    cluster: ClusterPlan, labels: Mapping[str, str], environ: Mapping[str, str], execvpe: Exec
) -> NoReturn:
    """Replace this process with ``ray start --block``: the worker lives as long as Ray does."""
    argv = _ray_start(cluster, labels, environ)
    try:
        execvpe(argv[0], argv, ray_env(cluster, environ))
    except OSError as err:
        raise ClusterRayError(f"cannot run {argv[0]}: {err.strerror}", "reinstall Ray") from err
    raise SystemExit(0)  # only reached when execvpe is replaced in tests


def clear(state_dir: str | Path) -> None:
    """No cluster this start: forget a previous start's membership."""
    with contextlib.suppress(OSError):
        (Path(state_dir) / CLUSTER_FILE).unlink()
