"""The cluster plan (pure): roles, derived environment with sources, overrides, engine argv."""

from __future__ import annotations

import pytest

from entrypoint.cluster.net import Interface
from entrypoint.cluster.plan import HEAD, WORKER, plan_cluster, role_for
from entrypoint.errors import ClusterInterfaceError, SettingError
from entrypoint.plan.command import build_command
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import resolve
from tests.cluster.test_net import RDMA, SPARK
from tests.conftest import PROFILES

CATALOG = Catalog([PROFILES])
HEAD_IP, WORKER_IP = "192.168.100.10", "192.168.100.11"
WORKER_HOST = [
    Interface("enp1s0f1np1", True, (f"{WORKER_IP}/24",), 200_000, False, ("rocep1s0f1",)),
]


def _plan(**env: str):  # type: ignore[no-untyped-def]
    return resolve(CATALOG, {"CLUSTER_NODES": "2", "CLUSTER_HEAD": HEAD_IP, **env}, {})


def test_head_environment_is_derived_with_its_sources() -> None:
    cluster = plan_cluster(_plan(), HEAD, SPARK, RDMA, {}, unified_memory=True)
    env = {k: s.value for k, s in cluster.env.items()}
    assert env == {
        "VLLM_HOST_IP": HEAD_IP,
        "NCCL_SOCKET_IFNAME": "enp1s0f1np1",
        "GLOO_SOCKET_IFNAME": "enp1s0f1np1",
        "NCCL_IB_HCA": "roceP2p1s0f1,rocep1s0f1",
        "RAY_memory_monitor_refresh_ms": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": "/run/secrets/ray_token",
        "RAY_ADDRESS": f"{HEAD_IP}:6379",
    }
    assert all(s.source == "derived" for k, s in cluster.env.items() if k != "RAY_AUTH_TOKEN_PATH")
    assert "twins" in cluster.env["NCCL_IB_HCA"].origin
    assert cluster.engine_args() == ["--distributed-executor-backend", "ray", "--tensor-parallel-size", "2"]


def test_token_auth_is_on_whatever_the_environment_says_and_every_ray_port_is_pinned() -> None:
    plan = _plan(CLUSTER_TOKEN_FILE="/t/token", CLUSTER_PORT="7000")
    inherited = {"RAY_AUTH_MODE": "disabled"}
    for role, host in ((HEAD, SPARK), (WORKER, WORKER_HOST)):
        cluster = plan_cluster(plan, role, host, RDMA, inherited, unified_memory=True)
        assert cluster.env["RAY_AUTH_MODE"].value == "token"
        assert cluster.env["RAY_AUTH_TOKEN_PATH"].value == "/t/token" and cluster.token_file == "/t/token"
        argv = cluster.ray_start_argv({})
        flags = [w for w in argv if w.endswith("-port")]
        ports = [int(argv[argv.index(f) + 1]) for f in flags]
        assert all(7000 <= p <= 7107 for p in ports) and len(set(ports)) == len(ports)
        assert ("--ray-client-server-port" in flags) is (role == HEAD)
        assert {
            "--node-manager-port",
            "--object-manager-port",
            "--min-worker-port",
            "--max-worker-port",
        } <= set(flags)
        assert cluster.shown()["ports"] == "7000-7107"
    with pytest.raises(SettingError, match="CLUSTER_PORT"):
        _plan(CLUSTER_PORT="65500")


def test_a_variable_already_set_wins_over_the_derived_one() -> None:
    cluster = plan_cluster(_plan(), HEAD, SPARK, RDMA, {"NCCL_IB_HCA": "mlx5_0"}, unified_memory=False)
    assert (cluster.env["NCCL_IB_HCA"].value, cluster.env["NCCL_IB_HCA"].source) == ("mlx5_0", "env")
    assert "RAY_memory_monitor_refresh_ms" not in cluster.env


def test_worker_joins_the_head_and_blocks() -> None:
    cluster = plan_cluster(_plan(), WORKER, WORKER_HOST, ["rocep1s0f1"], {}, unified_memory=True)
    assert (cluster.node_ip, cluster.address) == (WORKER_IP, f"{HEAD_IP}:6379")
    argv = cluster.ray_start_argv({"spark-serve-role": "worker", "spark-serve-checkpoint": "abc"})
    assert argv[:5] == ["ray", "start", "--address", f"{HEAD_IP}:6379", "--block"]
    assert argv[argv.index("--node-ip-address") + 1] == WORKER_IP
    assert argv[argv.index("--labels") + 1] == "spark-serve-checkpoint=abc,spark-serve-role=worker"
    assert "RAY_ADDRESS" not in cluster.env


def test_head_start_binds_its_node_ip_and_port() -> None:
    cluster = plan_cluster(_plan(CLUSTER_PORT="6400"), HEAD, SPARK, RDMA, {}, unified_memory=True)
    argv = cluster.ray_start_argv({"spark-serve-role": "head"})
    assert argv[:5] == ["ray", "start", "--head", "--port", "6400"]
    assert argv[argv.index("--node-ip-address") + 1] == HEAD_IP


def test_pipeline_parallelism_from_the_setting() -> None:
    cluster = plan_cluster(_plan(CLUSTER_PARALLEL="pipeline"), HEAD, SPARK, RDMA, {}, True)
    assert cluster.engine_args()[-2:] == ["--pipeline-parallel-size", "2"]


def test_bad_cluster_settings_name_the_variable() -> None:
    with pytest.raises(SettingError, match="CLUSTER_PARALLEL"):
        _plan(CLUSTER_PARALLEL="data")
    with pytest.raises(SettingError, match="CLUSTER_NODES"):
        _plan(CLUSTER_NODES="0")


def test_missing_head_and_a_head_that_is_not_this_host_are_refused() -> None:
    plan = resolve(CATALOG, {"CLUSTER_NODES": "2"}, {})
    with pytest.raises(ClusterInterfaceError, match="CLUSTER_HEAD is unset"):
        plan_cluster(plan, WORKER, WORKER_HOST, [], {}, True)
    with pytest.raises(ClusterInterfaceError, match="not an address of this host"):
        plan_cluster(_plan(), HEAD, WORKER_HOST, [], {}, True)


def test_role_follows_whether_the_head_address_is_ours() -> None:
    assert role_for(SPARK, HEAD_IP) == HEAD
    assert role_for(WORKER_HOST, HEAD_IP) == WORKER


def test_cluster_flags_go_before_extra_args_so_the_user_wins() -> None:
    plan = _plan(VLLM_EXTRA_ARGS="--tensor-parallel-size 1")
    cluster = plan_cluster(plan, HEAD, SPARK, RDMA, {}, unified_memory=True)
    command = build_command(plan, "/m", {}, cluster.engine_args(), cluster.env)
    assert command.argv[-6:] == [*cluster.engine_args(), "--tensor-parallel-size", "1"][-6:]
    assert command.argv.index("--distributed-executor-backend") < len(command.argv) - 2
    assert command.shown_env()["VLLM_HOST_IP"] == HEAD_IP


def test_plan_on_this_host_refuses_an_unknown_interface_in_one_line() -> None:
    from tests.conftest import clean_env, run_cli

    env = clean_env(
        HF_HUB_OFFLINE="1", CLUSTER_NODES="2", CLUSTER_HEAD="10.99.0.1", CLUSTER_INTERFACE="nope0"
    )
    result = run_cli(["plan"], env)
    assert result.code == 40, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("spark-serve: error: CLUSTER_INTERFACE=nope0 is not an interface of this host")
    assert "use one of:" in line
