"""Settings + this host's network → the cluster's role, addresses and environment (pure).

Two or more Sparks run one vLLM server on Ray: the head (``spark-serve
launch`` with ``CLUSTER_NODES`` > 1) starts the Ray head and vLLM with the Ray
executor, tensor- or pipeline-parallel across the nodes; each worker
(``spark-serve worker``) joins it. Every value derived here is shown by
``spark-serve plan`` with where it came from, and a variable already set in the
environment wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ClusterInterfaceError
from ..plan.resolve import Plan, Setting

if TYPE_CHECKING:  # the interface reading (sockets) is imported by the commands that plan a cluster
    from .net import Interface

HEAD, WORKER = "head", "worker"
# Ray's ports, each pinned to an offset from CLUSTER_PORT (the GCS) so that one
# range, CLUSTER_PORT to CLUSTER_PORT + 107, is all a fabric firewall opens.
RAY_PORT_OFFSETS: dict[str, int] = {
    "--node-manager-port": 1,
    "--object-manager-port": 2,
    "--runtime-env-agent-port": 3,
    "--dashboard-agent-grpc-port": 4,
    "--dashboard-agent-listen-port": 5,
    "--metrics-export-port": 6,
}
HEAD_PORT_OFFSETS: dict[str, int] = {"--ray-client-server-port": 7}
WORKER_PORTS = (8, 107)  # --min-worker-port, --max-worker-port
PORT_SPAN = WORKER_PORTS[1]


@dataclass(frozen=True)
class ClusterPlan:
    role: str  # head | worker
    head: str  # the head's address
    port: int  # Ray's GCS port on the head
    nodes: int
    parallel: str  # tensor | pipeline
    interface: str
    node_ip: str
    env: dict[str, Setting]

    @property
    def address(self) -> str:
        return f"{self.head}:{self.port}"

    def engine_args(self) -> list[str]:
        """The vLLM flags that spread the engine over the nodes (one GPU each)."""
        size = "--tensor-parallel-size" if self.parallel == "tensor" else "--pipeline-parallel-size"
        return ["--distributed-executor-backend", "ray", size, str(self.nodes)]

    def ports(self) -> list[str]:
        """Every port Ray opens on this node, pinned: ``--flag value`` pairs."""
        pinned = {**RAY_PORT_OFFSETS, **(HEAD_PORT_OFFSETS if self.role == HEAD else {})}
        low, high = WORKER_PORTS
        pinned |= {"--min-worker-port": low, "--max-worker-port": high}
        return [word for flag, offset in pinned.items() for word in (flag, str(self.port + offset))]

    def ray_start_argv(self, labels: Mapping[str, str]) -> list[str]:
        """``ray start`` for this node; the worker's blocks (it is the container's process)."""
        common = [
            "--node-ip-address",
            self.node_ip,
            *self.ports(),
            "--disable-usage-stats",
            "--labels",
            ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        ]
        if self.role == HEAD:
            return ["ray", "start", "--head", "--port", str(self.port), "--include-dashboard=false", *common]
        return ["ray", "start", "--address", self.address, "--block", *common]

    @property
    def token_file(self) -> str:
        return str(self.env["RAY_AUTH_TOKEN_PATH"].value)

    def shown(self) -> dict[str, object]:
        return {
            "role": self.role,
            "head": self.address,
            "ports": f"{self.port}-{self.port + PORT_SPAN}",
            "nodes": self.nodes,
            "parallel": self.parallel,
            "interface": self.interface,
            "node_ip": self.node_ip,
            "env": {
                k: {"value": s.value, "source": s.source, "origin": s.origin} for k, s in self.env.items()
            },
        }


def role_for(interfaces: Sequence[Interface], head: str) -> str:
    """head when ``head`` is one of this host's addresses, else worker (for ``plan``)."""
    own = {a.split("/")[0] for i in interfaces for a in i.addresses}
    return HEAD if head in own else WORKER


def is_cluster(plan: Plan) -> bool:
    return int(plan.value("cluster_nodes") or 1) > 1


def plan_cluster(
    plan: Plan,
    role: str,
    interfaces: Sequence[Interface],
    rdma_devices: Sequence[str],
    inherited: Mapping[str, str],
    unified_memory: bool,
) -> ClusterPlan:
    """The cluster side of ``plan`` for a node in ``role``; raises ClusterInterfaceError."""
    from .net import choose_interface, twin_devices

    head = str(plan.value("cluster_head") or "")
    nodes = int(plan.value("cluster_nodes"))
    if not head and (role == WORKER or not plan.value("cluster_interface")):
        raise ClusterInterfaceError(
            ("`spark-serve worker`: " if role == WORKER else f"CLUSTER_NODES={nodes} but ")
            + "CLUSTER_HEAD is unset",
            "set CLUSTER_HEAD to the head's fabric address on every node (on the head: its own)",
        )
    chosen, node_ip, why = choose_interface(interfaces, head, plan.value("cluster_interface"))
    own = [a.split("/")[0] for a in chosen.addresses]
    if role == HEAD and head and head not in own:
        raise ClusterInterfaceError(
            f"CLUSTER_HEAD={head} is not an address of this host's {chosen.name} ({', '.join(own)})",
            f"on the head, set CLUSTER_HEAD to its own fabric address, e.g. {own[0]}",
        )
    source = "env" if why == "CLUSTER_INTERFACE" else "derived"
    origin = f"{why} ({chosen.name})"
    env: dict[str, Setting] = {}

    def put(name: str, value: str, reason: str) -> None:
        if inherited.get(name):
            env[name] = Setting(inherited[name], "env", name)
        else:
            env[name] = Setting(value, source, reason)

    put("VLLM_HOST_IP", node_ip, f"{chosen.name}'s address, chosen by {origin}")
    put("NCCL_SOCKET_IFNAME", chosen.name, f"NCCL's bootstrap and socket traffic on {origin}")
    put("GLOO_SOCKET_IFNAME", chosen.name, f"torch.distributed's Gloo groups on {origin}")
    hcas = twin_devices(chosen.rdma, rdma_devices)
    if hcas:
        put(
            "NCCL_IB_HCA",
            ",".join(hcas),
            f"{chosen.name}'s RDMA devices with their twins in the other PCI domain",
        )
    else:
        put("NCCL_IB_DISABLE", "1", f"{chosen.name} has no RDMA device: NCCL uses sockets")
    if unified_memory:
        put(
            "RAY_memory_monitor_refresh_ms",
            "0",
            "GPU memory is system memory here: Ray's OOM monitor would kill the engine's workers",
        )
    # Always on, whatever the environment says: no node or driver joins without the token.
    env["RAY_AUTH_MODE"] = Setting("token", "derived", "Ray's token authentication, on in every cluster")
    token = plan.settings["cluster_token_file"]
    env["RAY_AUTH_TOKEN_PATH"] = Setting(str(token.value), token.source, "CLUSTER_TOKEN_FILE")
    if role == HEAD:
        put("RAY_ADDRESS", f"{node_ip}:{plan.value('cluster_port')}", "the Ray head this node starts")
    return ClusterPlan(
        role=role,
        head=head if role == WORKER else node_ip,
        port=int(plan.value("cluster_port")),
        nodes=nodes,
        parallel=str(plan.value("cluster_parallel")),
        interface=chosen.name,
        node_ip=node_ip,
        env=env,
    )
