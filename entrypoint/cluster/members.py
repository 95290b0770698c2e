"""Who is in the cluster, judged (pure), and the head's wait for its workers.

Each node joins Ray only once its checkpoint is complete and verified, and
says so in its Ray node labels: its role, the checkpoint's fingerprint and
revision. The head reads ``ray.nodes()`` and compares.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ClusterJoinTimeoutError, ClusterMismatchError

ROLE, CHECKPOINT, REVISION = "spark-serve-role", "spark-serve-checkpoint", "spark-serve-revision"
_WEIGHTS = ("*.safetensors", "*.json")


@dataclass(frozen=True)
class Node:
    ip: str
    alive: bool
    role: str  # head | worker | "" (a node spark-serve did not start)
    checkpoint: str
    revision: str

    @property
    def phase(self) -> str:
        return "joined" if self.alive else "lost"


def checkpoint_labels(role: str, model_dir: Path, repo: str | None) -> dict[str, str]:
    """Labels for a node whose checkpoint at ``model_dir`` is complete and verified.

    The fingerprint covers the repo, the snapshot's commit (its folder name in the
    Hub cache) and every weight and config file's name and size, so two nodes agree
    only when they hold the same files."""
    commit = model_dir.name if model_dir.parent.name == "snapshots" else "local"
    files = sorted(
        (p.relative_to(model_dir).as_posix(), p.stat().st_size)
        for pattern in _WEIGHTS
        for p in model_dir.rglob(pattern)
        if p.is_file()
    )
    digest = hashlib.sha256(json.dumps([repo, commit, files]).encode()).hexdigest()[:16]
    return {ROLE: role, CHECKPOINT: digest, REVISION: commit}


def nodes_from_ray(raw: Iterable[Mapping[str, Any]]) -> list[Node]:
    """``ray.nodes()`` entries → nodes; a node that restarted shows twice, the live entry wins."""
    by_ip: dict[str, Node] = {}
    for entry in raw:
        labels = entry.get("Labels") or {}
        node = Node(
            ip=str(entry.get("NodeManagerAddress", "")),
            alive=bool(entry.get("Alive")),
            role=str(labels.get(ROLE, "")),
            checkpoint=str(labels.get(CHECKPOINT, "")),
            revision=str(labels.get(REVISION, "")),
        )
        if node.ip not in by_ip or node.alive:
            by_ip[node.ip] = node
    return sorted(by_ip.values(), key=lambda n: (n.role != "head", n.ip))


@dataclass(frozen=True)
class Membership:
    expected: int
    nodes: tuple[Node, ...]

    @property
    def joined(self) -> int:
        return sum(1 for n in self.nodes if n.alive)

    @property
    def lost(self) -> list[Node]:
        return [n for n in self.nodes if not n.alive]

    def to_json(self, phase: str) -> dict[str, Any]:
        return {
            "phase": phase,
            "expected": self.expected,
            "joined": self.joined,
            "nodes": [{**asdict(n), "phase": n.phase} for n in self.nodes],
            "updated_at": time.time(),
        }


def check_checkpoints(nodes: Iterable[Node], head: Node) -> None:
    """Refuse a worker whose checkpoint differs from the head's, or one spark-serve did not start."""
    for node in nodes:
        if node is head or not node.alive:
            continue
        if not node.role:
            raise ClusterMismatchError(
                node.ip,
                "joined the Ray cluster without `spark-serve worker` (no spark-serve labels)",
                "start it with `spark-serve worker` (compose profile `worker`), not a bare `ray start`",
            )
        if node.checkpoint != head.checkpoint:
            raise ClusterMismatchError(
                node.ip,
                f"holds another checkpoint than the head (revision {node.revision}, files "
                f"{node.checkpoint}; the head: revision {head.revision}, files {head.checkpoint})",
                "set the same MODEL and MODEL_REVISION (a commit) on every node, then restart the worker",
            )


def wait_for_workers(
    read: Callable[[], list[Node]],
    expected: int,
    head_ip: str,
    timeout_s: float,
    report: Callable[[Membership], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    every_s: float = 2.0,
) -> Membership:
    """Poll until ``expected`` nodes are in with the head's checkpoint; bounded by ``timeout_s``."""
    deadline = clock() + timeout_s
    while True:
        nodes = read()
        head = next((n for n in nodes if n.ip == head_ip and n.alive), None)
        if head is not None:
            check_checkpoints(nodes, head)
        members = Membership(expected, tuple(n for n in nodes if n.alive))
        report(members)
        if members.joined >= expected:
            return members
        if clock() >= deadline:
            raise _never_joined(members, nodes, head_ip, timeout_s)
        sleep(min(every_s, max(deadline - clock(), 0.0)))


def _never_joined(members: Membership, nodes: list[Node], head_ip: str, timeout_s: float) -> Exception:
    missing = members.expected - members.joined
    joined = ", ".join(f"{n.ip} ({n.role or 'not spark-serve'})" for n in members.nodes) or "none"
    left = [n.ip for n in nodes if not n.alive]
    gone = f"; joined then left: {', '.join(left)}" if left else ""
    return ClusterJoinTimeoutError(
        f"{missing} of {members.expected - 1} workers never joined the head at {head_ip} in "
        f"{timeout_s:.0f}s (CLUSTER_JOIN_TIMEOUT_S); in: {joined}{gone}",
        f"on each other Spark run `spark-serve worker` with CLUSTER_HEAD={head_ip} and the same MODEL; "
        f"a worker joins once its download is verified (its log says where it is); check the link "
        f"with `ping {head_ip}` over the fabric interface and that CLUSTER_PORT is not firewalled",
    )
