"""Membership from Ray's node table, checkpoint agreement, the bounded wait and the watcher (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from entrypoint.cluster.members import (
    CHECKPOINT,
    REVISION,
    ROLE,
    Membership,
    Node,
    checkpoint_labels,
    nodes_from_ray,
    wait_for_workers,
)
from entrypoint.cluster.watch import lost_reason, watch
from entrypoint.errors import ClusterJoinTimeoutError, ClusterMismatchError, ExitCode
from entrypoint.state import CLUSTER_FILE


def _ray_node(
    ip: str, alive: bool = True, role: str = "worker", ck: str = "c1", rev: str = "r1"
) -> dict[str, Any]:
    labels = {ROLE: role, CHECKPOINT: ck, REVISION: rev} if role else {}
    return {"NodeManagerAddress": ip, "Alive": alive, "Labels": {"ray.io/node-id": "x", **labels}}


HEAD = _ray_node("10.0.0.1", role="head")


def test_nodes_from_ray_keep_the_live_entry_of_a_node_that_came_back() -> None:
    nodes = nodes_from_ray([_ray_node("10.0.0.2", alive=False), HEAD, _ray_node("10.0.0.2")])
    assert [(n.ip, n.role, n.alive) for n in nodes] == [
        ("10.0.0.1", "head", True),
        ("10.0.0.2", "worker", True),
    ]


def test_checkpoint_labels_change_with_the_files_and_name_the_commit(tmp_path: Path) -> None:
    snap = tmp_path / "models--o--m" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x" * 10)
    first = checkpoint_labels("head", snap, "o/m")
    assert first[REVISION] == "a" * 40 and first[ROLE] == "head" and len(first[CHECKPOINT]) == 16
    (snap / "model.safetensors").write_bytes(b"x" * 11)
    assert checkpoint_labels("head", snap, "o/m")[CHECKPOINT] != first[CHECKPOINT]
    assert checkpoint_labels("worker", snap, "o/other")[CHECKPOINT] != first[CHECKPOINT]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.5)


def test_wait_returns_once_every_node_is_in() -> None:
    tables = iter([[HEAD], [HEAD], [HEAD, _ray_node("10.0.0.2")]])
    seen: list[int] = []
    clock = Clock()
    members = wait_for_workers(
        lambda: nodes_from_ray(next(tables)),
        2,
        "10.0.0.1",
        60,
        lambda m: seen.append(m.joined),
        clock,
        clock.sleep,
    )
    assert members.joined == 2 and seen == [1, 1, 2]


def test_a_worker_that_never_joins_times_out_naming_the_head_and_who_is_in() -> None:
    clock = Clock()
    with pytest.raises(ClusterJoinTimeoutError) as err:
        wait_for_workers(
            lambda: nodes_from_ray([HEAD]), 3, "10.0.0.1", 10, lambda m: None, clock, clock.sleep
        )
    text = str(err.value)
    assert "2 of 2 workers never joined the head at 10.0.0.1 in 10s" in text
    assert "10.0.0.1 (head)" in text and "spark-serve worker" in text and "CLUSTER_HEAD=10.0.0.1" in text
    assert err.value.exit_code == ExitCode.CLUSTER_JOIN_TIMEOUT
    assert clock.now <= 11  # bounded


def test_a_worker_with_another_checkpoint_is_refused_by_ip() -> None:
    clock = Clock()
    table = [HEAD, _ray_node("10.0.0.2", ck="c2", rev="r2")]
    with pytest.raises(ClusterMismatchError) as err:
        wait_for_workers(lambda: nodes_from_ray(table), 2, "10.0.0.1", 10, lambda m: None, clock, clock.sleep)
    assert "worker 10.0.0.2" in str(err.value) and "revision r2" in str(err.value) and "r1" in str(err.value)
    assert "MODEL_REVISION" in str(err.value)
    assert err.value.exit_code == ExitCode.CLUSTER_MISMATCH


def test_a_node_that_spark_serve_did_not_start_is_refused() -> None:
    clock = Clock()
    table = [HEAD, _ray_node("10.0.0.9", role="")]
    with pytest.raises(ClusterMismatchError, match="without `spark-serve worker`"):
        wait_for_workers(lambda: nodes_from_ray(table), 2, "10.0.0.1", 10, lambda m: None, clock, clock.sleep)


def test_lost_reason_names_a_dead_worker_or_the_shortfall() -> None:
    alive = Node("10.0.0.1", True, "head", "c", "r")
    dead = Node("10.0.0.2", False, "worker", "c", "r")
    assert lost_reason(Membership(2, (alive, dead))) == "worker 10.0.0.2 lost"
    assert lost_reason(Membership(2, (alive,))) == "1 of 2 nodes gone from Ray"
    assert lost_reason(Membership(1, (alive,))) is None


def test_watcher_records_membership_and_ends_the_engine_when_a_worker_is_lost(tmp_path: Path) -> None:
    tables = iter([[HEAD, _ray_node("10.0.0.2")], [HEAD, _ray_node("10.0.0.2", alive=False)]])
    ended: list[bool] = []
    written: list[dict[str, Any]] = []

    def sleep(_: float) -> None:
        written.append(json.loads((tmp_path / CLUSTER_FILE).read_text()))

    reason = watch(
        lambda: nodes_from_ray(next(tables)),
        2,
        str(tmp_path),
        engine_alive=lambda: True,
        end_engine=lambda: ended.append(True),
        stopped=lambda: False,
        sleep=sleep,
    )
    assert reason == "worker 10.0.0.2 lost" and ended == [True]
    assert written[0]["phase"] == "joined" and written[0]["joined"] == 2
    final = json.loads((tmp_path / CLUSTER_FILE).read_text())
    assert final["phase"] == "lost" and final["error"] == reason
    assert [n["phase"] for n in final["nodes"]] == ["joined", "lost"]


def test_a_node_that_joins_and_leaves_after_the_cluster_formed_ends_nothing(tmp_path: Path) -> None:
    """Only the nodes that formed the cluster count: a stranger (or a second worker) that
    comes and goes while the engine serves leaves it alone; a formed worker lost still ends it."""
    stranger = _ray_node("10.0.0.9", role="")
    tables = iter(
        [
            [HEAD, _ray_node("10.0.0.2"), stranger],
            [HEAD, _ray_node("10.0.0.2"), _ray_node("10.0.0.9", alive=False, role="")],
            [HEAD, _ray_node("10.0.0.2", alive=False), _ray_node("10.0.0.9", alive=False, role="")],
        ]
    )
    ended: list[bool] = []
    reason = watch(
        lambda: nodes_from_ray(next(tables)),
        2,
        str(tmp_path),
        engine_alive=lambda: True,
        end_engine=lambda: ended.append(True),
        stopped=lambda: False,
        sleep=lambda _: None,
        formed=("10.0.0.1", "10.0.0.2"),
    )
    assert reason == "worker 10.0.0.2 lost" and ended == [True]
    alive, gone = Node("10.0.0.1", True, "head", "c", "r"), Node("10.0.0.9", False, "", "", "")
    assert lost_reason(Membership(2, (alive, gone)), ("10.0.0.1",)) is None
    assert lost_reason(Membership(2, (alive,)), ("10.0.0.1", "10.0.0.2")) == "worker 10.0.0.2 lost"


def test_watcher_stops_with_its_engine(tmp_path: Path) -> None:
    calls: list[int] = []
    result = watch(
        lambda: calls.append(1) or [], 2, str(tmp_path), lambda: False, lambda: None, lambda: False
    )
    assert result is None and calls == []
