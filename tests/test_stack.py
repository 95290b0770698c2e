"""The real Dockerfile built by compose and the real ``docker-compose.yml`` run in
a real Docker engine, on the STAND-IN for vLLM's image (``tests/standin``: CPU
builds of vLLM 0.32.0 and torch, Debian's Python 3.11, no FlashInfer kernels).
``tests/stack/cpu.override.yml`` changes only what this machine needs (no GPU,
host networking, no memlock, the local Hub, the CPU engine's start command).

The tests share one stack and run in order: first start, its processes and
caches, doctor, monitoring, Ray, a restart, a heal across containers, a drained
stop, two models at once (MODELS), a crash loop, and a volume that an older image left root-owned.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from entrypoint.errors import ExitCode
from entrypoint.plan.stack import MAX_MODELS
from tests.standin.build import ensure_standin
from tests.support.docker import Compose, docker_engine
from tests.support.drain import assert_drained, streams_across
from tests.support.engine import free_ports, http_json
from tests.support.hub import Hub
from tests.support.sidecar import get
from tests.support.stack import (
    IMAGE,
    OVERRIDE,
    SECOND_REPO,
    TINY_REPO,
    Stack,
    compose_env,
    prometheus_standin,
)

pytestmark = [pytest.mark.engine, pytest.mark.docker]
REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def stack(
    checkpoint_factory: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    with docker_engine() as docker, Hub() as hub:
        base = ensure_standin(docker)
        hub.add_dir(TINY_REPO, checkpoint_factory("bf16"))
        hub.add_dir(SECOND_REPO, checkpoint_factory("bf16"))  # MODELS: a second repo
        env = compose_env(docker, base, prometheus_standin(docker, base), hub, work)
        compose = Compose(
            docker, [REPO_ROOT / "docker-compose.yml", OVERRIDE], f"sparkserve-test-{time.time_ns()}", env
        )
        api, side = (f"http://127.0.0.1:{env[k]}" for k in ("TEST_API_PORT", "TEST_SIDECAR_PORT"))
        stack = Stack(compose, hub, api, side, int(env["TEST_PROMETHEUS_PORT"]))
        try:
            compose("build", timeout=900)
            yield stack
        finally:
            compose("--profile", "monitoring", "--profile", "cluster", "down", "-v", "-t", "5", check=False)
            docker.run("image", "prune", "-f", check=False)  # earlier builds of the image, now untagged


def chat(stack: Stack) -> str:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    return str(http_json(stack.api + "/v1/chat/completions", body)["choices"][0]["finish_reason"])


def test_up_downloads_into_the_volume_warms_up_then_serves(stack: Stack) -> None:
    stack.compose("up", "-d", timeout=300)
    stack.wait(stack.ready, 420, "the sidecar ready")
    assert stack.hub.gets[WEIGHTS] == 1 and stack.hub.cdn_auth  # once, through the CDN redirect
    assert f"models--{TINY_REPO.replace('/', '--')}" in stack.in_engine("ls", "/cache/huggingface/hub")
    status = stack.status()
    warmup = status["checks"]["warmup"]["last"]
    assert warmup["ok"] and status["ready"] and status["phase"] == "serving"
    assert stack.launcher()["started_at"] + status["time_to_ready_seconds"] >= warmup["at"]
    assert chat(stack) in ("length", "stop")
    metrics = get(stack.sidecar + "/metrics")[1].decode()
    assert "vllm:request_success_total" in metrics and "sparkserve_phase" in metrics
    assert 'sparkserve_probe_duration_seconds_count{kind="warmup"} 1.0' in metrics


def test_every_engine_process_runs_as_990_and_writes_caches_only_on_volumes(stack: Stack) -> None:
    header, *rows = [
        line.split() for line in stack.compose("top", "vllm").stdout.splitlines() if line.strip()
    ]
    uids = {row[header.index("UID")] for row in rows}
    assert len(rows) >= 3 and uids == {"990"}, rows  # the API server, the engine core, its worker
    (container,) = stack.compose("ps", "-q", "vllm").stdout.split()
    # The root filesystem is read-only: nothing but the volumes and the private /tmp
    # (a tmpfs: the running engine's ZMQ sockets, torch.distributed's rendezvous file,
    # inductor's precompiled headers) can be written at all.
    refused = stack.compose("exec", "-T", "vllm", "touch", "/home/spark/x", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert "tmpfs" in stack.in_engine("sh", "-c", "grep ' /tmp ' /proc/mounts")
    changed = stack.compose.docker.run("diff", container).stdout.split("\n")
    paths = [line[2:] for line in changed if line.strip()]
    assert set(paths) <= {"/run", "/run/secrets"}, paths  # the secrets folder's mount point
    compiled = stack.in_engine("find", "/cache/vllm", "-path", "*inductor*", "-type", "f").split()
    assert compiled, "no torch.compile (inductor) cache on the vllm-cache volume"
    assert stack.in_engine("ls", "-A", "/home/spark").split() in ([], [".bash_logout", ".bashrc", ".profile"])


def _proc_status(stack: Stack, service: str, pid: str = "1") -> dict[str, str]:
    text = stack.compose("exec", "-T", service, "cat", f"/proc/{pid}/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_each_container_has_only_the_privileges_it_needs(stack: Stack) -> None:
    """The engine: uid 990, no capability. The sidecar: its own uid with CAP_KILL alone,
    which signals the engine but cannot read its environment (its secrets). Nobody gains a
    privilege by exec; the PID namespace's owner is a third uid neither can signal."""
    listing = (
        "import os\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try: print(p, os.stat('/proc/' + p).st_uid, open('/proc/%s/cmdline' % p, 'rb').read()"
        ".replace(bytes(1), b' ').decode())\n    except OSError: pass"
    )
    rows = [r.split(maxsplit=2) for r in stack.in_engine("python3", "-c", listing).splitlines()]
    pidns = [r[0] for r in rows if r[1] == "65534"]
    sidecars = [r[0] for r in rows if r[1] == "0" and "sidecar" in r[-1]]
    assert pidns and sidecars, rows
    pid = str(stack.launcher()["pid"])
    engine, sidecar = _proc_status(stack, "vllm", pid), _proc_status(stack, "vllm", sidecars[-1])
    assert engine["Uid"].split()[0] == "990" and int(engine["CapEff"], 16) == 0
    assert sidecar["Uid"].split()[0] == "0" and sidecar["Gid"].split()[0] == "990"
    assert int(sidecar["CapEff"], 16) == 1 << 5 and int(sidecar["CapBnd"], 16) == 1 << 5  # CAP_KILL only
    assert engine["NoNewPrivs"].strip() == sidecar["NoNewPrivs"].strip() == "1"
    peek = stack.compose("exec", "-T", "sidecar", "cat", f"/proc/{pid}/environ", check=False)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr
    assert stack.compose("exec", "-T", "sidecar", "sh", "-c", f"kill -0 {pid}", check=False).returncode == 0
    for target in (pidns[0], sidecars[-1]):
        denied = stack.compose("exec", "-T", "vllm", "sh", "-c", f"kill -0 {target}", check=False)
        assert denied.returncode != 0, target  # the engine signals neither


def test_the_image_names_its_base_and_keeps_usage_statistics_off(stack: Stack) -> None:
    labels = json.loads(
        stack.compose.docker.run("image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE).stdout
    )
    assert labels["org.opencontainers.image.base.name"] == stack.compose.env["BASE_IMAGE"]
    env = dict(line.split("=", 1) for line in stack.in_engine("env").splitlines() if "=" in line)
    assert env["VLLM_NO_USAGE_STATS"] == env["DO_NOT_TRACK"] == "1"
    # vLLM writes its usage report under VLLM_CONFIG_ROOT ($XDG_CONFIG_HOME/vllm) when enabled.
    assert "usage_stats.json" not in stack.in_engine(
        "find", env["XDG_CONFIG_HOME"], "-name", "*.json", check=False
    )


def test_doctor_in_the_engine_container_fails_only_on_what_needs_a_gpu(stack: Stack) -> None:
    doc = json.loads(
        stack.compose("exec", "-T", "vllm", "spark-serve", "doctor", "--json", check=False).stdout
    )
    failing = {line["name"] for line in doc["lines"] if line["status"] == "fail"}
    assert failing <= {"gpu", "driver", "torch", "vllm"}, doc["lines"]


def test_monitoring_profile_scrapes_the_sidecar_and_loads_the_rules(stack: Stack) -> None:
    stack.compose("--profile", "monitoring", "up", "-d", "prometheus", timeout=120)
    url = f"http://127.0.0.1:{stack.prometheus_port}"

    def target_up() -> bool:
        try:
            targets = json.loads(get(url + "/api/v1/targets")[1])["data"]["activeTargets"]
        except (OSError, ValueError):
            return False
        return any(t["health"] == "up" and t["labels"]["job"] == "spark-serve" for t in targets)

    stack.wait(target_up, 90, "Prometheus scraping the sidecar", "prometheus", "sidecar")
    rules = json.loads(get(url + "/api/v1/rules")[1])["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"SparkServeEngineHung", "SparkServeEngineHealed"} <= names
    stack.compose("--profile", "monitoring", "rm", "-sf", "prometheus")


@pytest.fixture
def fabric() -> Iterator[str]:
    """A veth pair with loopback-range addresses: the worker's fabric port (.2) and
    the head's end (.1) on this machine."""
    name = "spkfab0"
    steps = [
        ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
        ["ip", "addr", "add", "127.77.0.2/24", "dev", name],
        ["ip", "addr", "add", "127.77.0.1/24", "dev", name + "p"],
        ["ip", "link", "set", name, "up"],
        ["ip", "link", "set", name + "p", "up"],
    ]
    for step in steps:
        made = subprocess.run(step, capture_output=True, text=True)
        if made.returncode != 0:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            pytest.skip(f"cannot make a veth pair here: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


RAY_NODES = (
    "import json, ray; ray.init(address='127.77.0.1:6399', logging_level='ERROR'); "
    "print(json.dumps([n['Labels'] for n in ray.nodes() if n['Alive']]))"
)


def test_ray_is_in_the_image_and_the_worker_joins_a_ray_head(stack: Stack, fabric: str) -> None:
    version = stack.compose("run", "--rm", "-T", "--entrypoint", "python3", "vllm", "-c",
                            "import ray; print(ray.__version__)")  # fmt: skip
    assert version.stdout.strip().splitlines()[-1] == "2.52.0"
    # The head's Ray from the same image: Ray refuses nodes whose Python differs.
    docker, project = stack.compose.docker, stack.compose.project
    head = f"{project}-ray-head"
    ray_head = ["start", "--head", "--block", "--node-ip-address", "127.77.0.1", "--port", "6399",
                "--include-dashboard=false", "--num-cpus", "1"]  # fmt: skip
    # With token auth, as every spark-serve cluster runs: the same token file as the worker's.
    auth = ["-e", "RAY_AUTH_MODE=token", "-e", "RAY_AUTH_TOKEN_PATH=/run/secrets/ray_token",
            "-v", f"{stack.compose.env['SECRETS_DIR']}:/run/secrets:ro"]  # fmt: skip
    docker.run(
        "run", "-d", "--name", head, "--network", "host", *auth, "--entrypoint", "ray", IMAGE, *ray_head
    )
    worker = f"{project}-worker"
    try:
        stack.compose(
            "--profile", "cluster", "run", "-d", "--name", worker, "--no-deps",
            "-e", "CLUSTER_NODES=2", "-e", "CLUSTER_HEAD=127.77.0.1", "-e", f"CLUSTER_INTERFACE={fabric}",
            "-e", "CLUSTER_PORT=6399", "-e", "STATE_DIR=/tmp/worker-state", "worker",  # not the engine state
            timeout=120,
        )  # fmt: skip

        def joined() -> bool:
            nodes = docker.run("exec", *auth[:4], head, "python3", "-c", RAY_NODES, check=False, timeout=60)
            lines = nodes.stdout.strip().splitlines()
            labels = json.loads(lines[-1]) if nodes.returncode == 0 and lines else []
            return any(node.get("spark-serve-role") == "worker" for node in labels)

        stack.wait(joined, 180, "the image's worker joins the Ray head with its checkpoint labels")
        log = docker.run("logs", worker).stderr
        assert "joining the Ray head at 127.77.0.1:6399 from 127.77.0.2" in log and "Traceback" not in log
    finally:
        docker.run("rm", "-f", worker, head, check=False)


def test_restart_is_ready_again_without_fetching_a_weight_byte(stack: Stack) -> None:
    stack.hub.reset_counters()
    first = stack.launcher()["start_id"]
    stack.compose("restart", "vllm", timeout=120)
    stack.wait(
        lambda: stack.ready() and stack.launcher()["start_id"] != first, 300, "ready after the restart"
    )
    assert stack.hub.gets[WEIGHTS] == 0 and chat(stack) in ("length", "stop")


def test_a_frozen_engine_is_healed_across_containers_and_comes_back(stack: Stack) -> None:
    launcher = stack.launcher()
    stack.in_engine("kill", "-STOP", str(launcher["pid"]))
    stack.wait(
        lambda: stack.status()["checks"]["heal"]["total"] >= 1, 180, "the sidecar heals the frozen engine"
    )
    stack.wait(lambda: stack.ready() and stack.launcher()["start_id"] != launcher["start_id"], 300,
               "compose brings the engine back, ready")  # fmt: skip
    heal = stack.status()["checks"]["heal"]
    # The frozen engine was ended once, with SIGKILL after its drain. With these short
    # probe timeouts a loaded 2-core machine can also see the engine that came back
    # healed once more; that is not what this test is about.
    (record,) = [r for r in heal["recent"] if r["pid"] == launcher["pid"]]
    assert record["signal"] == "SIGKILL" and record["was_ready"] is True and heal["total"] >= 1
    assert chat(stack) in ("length", "stop")


def test_stop_lets_a_streamed_completion_finish_within_the_grace_period(stack: Stack, tmp_path: Path) -> None:
    streams, took = streams_across(lambda: stack.compose("stop", timeout=120), stack.api, "tiny")
    assert_drained(streams, stack.compose("logs", "--no-color", "vllm").stdout, tmp_path)
    assert took < 60, f"compose stop took {took:.0f}s, past the 60 s grace period"
    assert stack.compose("ps", "-q", "pidns", "vllm", "sidecar").stdout.strip() == ""


def test_models_serves_both_by_name_and_drains_both_in_the_same_services(
    stack: Stack, tmp_path: Path
) -> None:
    stack.hub.reset_counters()
    both = {
        **stack.compose.env,
        "MODEL": "",
        "SERVED_MODEL_NAME": "",
        "MODELS": f"{TINY_REPO},{SECOND_REPO}",
        "ENGINE_PORT": str(free_ports(MAX_MODELS + 1)),  # the engines, then the router's metrics
    }
    models = Compose(stack.compose.docker, stack.compose.files, stack.compose.project, both)
    names = [repo.rsplit("/", 1)[1] for repo in (TINY_REPO, SECOND_REPO)]  # the repos' names
    models("up", "-d", timeout=300)
    stack.wait(stack.ready, 480, "the sidecar ready for both models")
    assert stack.hub.gets[WEIGHTS] == 1  # the second model's; the first was in the volume
    doc = stack.status()
    assert sorted(doc["models"]) == sorted(names) and all(m["ready"] for m in doc["models"].values())
    for name in names:  # by name, through the router on the API port
        body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        assert http_json(stack.api + "/v1/chat/completions", body)["model"] == name
    assert get(stack.api + "/health")[0] == 200  # what the vllm service's healthcheck asks
    # One engine of the set healed is tests/test_models_engine.py's; across containers it
    # is the one-model heal's signal path (above). Here: SIGTERM drains every engine.
    first, second = names
    streams, _ = streams_across(lambda: models("stop", timeout=120), stack.api, second)
    log = models("logs", "--no-color", "vllm").stdout
    assert_drained(streams, log, tmp_path)  # through the router
    assert f"engine {first} is up and routed" in log and "stopping every engine and the router" in log
    assert not re.search(r"engine \S+ ended", log), log[-4000:]  # none ended before the stop
    (container,) = models("ps", "-aq", "vllm").stdout.split()
    state = stack.compose.docker.run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container)
    assert state.stdout.split() == ["exited", "0"]  # the supervisor's drained exit


def test_a_crash_loop_backs_off_halts_and_reset_starts_again(stack: Stack) -> None:
    failing = {**stack.compose.env, "TEST_ENGINE_COMMAND": "python3 -c 'raise SystemExit(3)' {model}",
               "RESTART_LIMIT": "2"}  # fmt: skip
    crashing = Compose(stack.compose.docker, stack.compose.files, stack.compose.project, failing)
    crashing("up", "-d", "vllm", timeout=120)

    def phase() -> str:
        try:  # an exec racing a container that is restarting can hang: ask again
            result = crashing(
                "exec", "-T", "vllm", "cat", "/run/spark-serve/launcher.json", check=False, timeout=20
            )
        except subprocess.TimeoutExpired:
            return "down"
        return str(json.loads(result.stdout).get("phase")) if result.returncode == 0 else "down"

    stack.wait(lambda: phase() == "halted", 240, "the launcher halts the crash loop")

    def execs() -> int:
        return crashing("logs", "--no-color", "vllm").stdout.count("spark-serve: exec ")

    halted_after = execs()
    assert halted_after >= 2  # each failed start was an exec of the engine
    assert crashing("ps", "--status", "running", "-q", "vllm").stdout.strip()  # halted, container still up
    time.sleep(3)
    assert execs() == halted_after  # halted: nothing is started
    assert re.search(
        r"forgot \d+ engine starts", crashing("exec", "-T", "vllm", "spark-serve", "reset").stdout
    )
    stack.wait(lambda: execs() > halted_after, 120, "reset starts the engine again")


def test_a_root_owned_volume_from_an_older_image_is_one_line_with_the_fix(stack: Stack) -> None:
    stack.compose("down", "-t", "5", timeout=120)
    volume = f"{stack.compose.project}_hf-cache"
    mount = f"{volume}:/cache/huggingface"
    chown = ["--entrypoint", "chown", "-v", mount, IMAGE, "-R", "0:0", "/cache/huggingface"]
    stack.compose.docker.run("run", "--rm", "--user", "0", *chown)
    result = stack.compose("run", "--rm", "-T", "vllm", check=False, timeout=120)
    assert result.returncode == ExitCode.CACHE_UNWRITABLE, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("spark-serve")]
    assert len(lines) == 1 and "HF_HOME=/cache/huggingface" in lines[0] and "chown" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
