"""MODELS through the real CLI and the local Hub: the joint plan shown, a set that does
not fit refused before any weight byte, Helm values with a modelSpec per model."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import yaml

from entrypoint.errors import ExitCode
from entrypoint.plan.stack import MAX_MODELS
from tests.conftest import run_cli
from tests.support.downloads import download, hub_env
from tests.support.engine import free_port, free_ports
from tests.test_memory_cli import WEIGHTS, hub_with_wide_model, wide_llama

SET = "test/wide,test/other"


def _hub():  # type: ignore[no-untyped-def]
    hub = hub_with_wide_model()
    files = {"config.json": wide_llama(), "model.safetensors": WEIGHTS, "tokenizer.json": b"{}"}
    hub.add_repo("test/other", files)
    return hub


def test_plan_shows_one_table_of_the_set_against_the_device(tmp_path: Path) -> None:
    with _hub() as hub:
        env = hub_env(
            hub.url, tmp_path, MODELS=SET, HARDWARE="gb10", MAX_MODEL_LEN="4096", ENGINE_PORT="9100"
        )
        doc = json.loads(run_cli(["plan", "--json"], env).stdout)
        text = run_cli(["plan"], env).stdout
        assert hub.gets["model.safetensors"] == 0
    memory = doc["memory"]
    assert memory["fits"] and [m["name"] for m in memory["models"]] == ["wide", "other"]
    assert [e["port"] for e in doc["engines"]] == [9100, 9101]
    assert [Path(e["state_dir"]).name for e in doc["engines"]] == ["test-wide", "test-other"]
    used = sum(m["weights_bytes"] + m["allowance_bytes"] + m["kv_cache_bytes"] for m in memory["models"])
    assert used == memory["planned_bytes"] <= memory["budget_bytes"]
    first, second = memory["models"]
    assert first["gpu_memory_utilization"] > second["gpu_memory_utilization"]  # set after the first
    for line in ("MODEL", "wide", "other", "9100", "budget", "fits:     yes"):
        assert line in text, text


def test_a_set_that_does_not_fit_is_refused_before_any_weight_byte(tmp_path: Path) -> None:
    with _hub() as hub:
        env = hub_env(hub.url, tmp_path, MODELS=SET, HARDWARE="gb10", MAX_MODEL_LEN="32768")
        launched = run_cli(["launch"], env)
        fetched = download(env)
        shown = run_cli(["plan"], env)
        assert hub.gets["model.safetensors"] == 0  # only safetensors headers were read (range GETs)
    for result in (launched, fetched):
        assert result.code == ExitCode.STACK_TOO_SMALL, result.stderr
        first, *lines = result.stderr.strip().splitlines()
        assert first.startswith("spark-serve: error: MODELS do not fit together") and "Traceback" not in first
        assert [line.split(":")[0].strip() for line in lines] == ["wide", "other", "fix"]
        assert "dropping wide" in lines[-1] and "max_model_len 7680 or less for wide" in lines[-1]
    assert shown.code == 0 and "fits:     NO" in shown.stdout
    assert not (tmp_path / "state" / "models").exists() or not list((tmp_path / "state").rglob("starts.json"))


def test_model_and_models_together_and_a_bad_stack_file_are_refused_by_name(tmp_path: Path) -> None:
    both = run_cli(["plan"], hub_env("http://127.0.0.1:9", tmp_path, MODELS=SET, MODEL="test/wide"))
    assert both.code == ExitCode.CONFLICT and "MODELS and MODEL are both set" in both.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - model: test/wide\n    kv_share: 2\n")
    shown = run_cli(["plan"], hub_env("http://127.0.0.1:9", tmp_path, MODELS=str(bad)))
    assert shown.code == ExitCode.STACK_INVALID
    assert shown.stderr.startswith(f"spark-serve: error: {bad}: models.0.kv_share")
    setting = tmp_path / "setting.yaml"
    setting.write_text("models:\n  - model: test/wide\n    settings: {port: 1}\n")
    refused = run_cli(["plan"], hub_env("http://127.0.0.1:9", tmp_path, MODELS=str(setting)))
    assert refused.code == ExitCode.STACK_INVALID and "settings.port" in refused.stderr


def test_a_taken_port_is_refused_by_name_before_any_weight_byte_or_process(tmp_path: Path) -> None:
    base = free_ports(MAX_MODELS + 1)
    router = str(Path(sys.executable).parent / "vllm-router")
    with _hub() as hub, socket.socket() as held:
        held.bind(("127.0.0.1", base + 1))  # the second engine's port, taken by another program
        held.listen()
        env = hub_env(hub.url, tmp_path, MODELS=SET, HARDWARE="gb10", MAX_MODEL_LEN="4096", HOST="127.0.0.1",
                      PORT=str(free_port()), ENGINE_PORT=str(base), ROUTER_COMMAND=router)  # fmt: skip
        launched = run_cli(["launch"], env)
        assert hub.gets["model.safetensors"] == 0
    assert launched.code == ExitCode.PORT_IN_USE, launched.stderr
    (line,) = [x for x in launched.stderr.splitlines() if x.startswith("spark-serve: error:")]
    assert line.startswith(
        f"spark-serve: error: ENGINE_PORT: engine other cannot listen on 127.0.0.1:{base + 1}"
    )
    assert "nothing was started" in line and "set ENGINE_PORT to a free port" in line
    assert "Traceback" not in launched.stderr and not (tmp_path / "state" / "stack.json").exists()


def test_ports_that_overlap_or_overflow_are_refused_by_name(tmp_path: Path) -> None:
    inside = run_cli(
        ["plan"], hub_env("http://127.0.0.1:9", tmp_path, MODELS=SET, PORT="9103", ENGINE_PORT="9100")
    )
    assert inside.code == ExitCode.CONFLICT, inside.stderr
    assert "PORT 9103 is inside ENGINE_PORT 9100 to 9108" in inside.stderr
    past = run_cli(["plan"], hub_env("http://127.0.0.1:9", tmp_path, MODELS=SET, ENGINE_PORT="65530"))
    assert past.code == ExitCode.SETTING_INVALID and "set ENGINE_PORT to 65527 or less" in past.stderr


def test_helm_values_hold_a_model_spec_per_model(tmp_path: Path) -> None:
    with _hub() as hub:
        env = hub_env(hub.url, tmp_path, MODELS=SET, HARDWARE="gb10", MAX_MODEL_LEN="4096")
        result = run_cli(["plan", "--format", "helm-values"], env)
        doc = json.loads(run_cli(["plan", "--json"], env).stdout)
    assert result.code == 0, result.stderr
    values = yaml.safe_load(result.stdout)
    specs = values["servingEngineSpec"]["modelSpec"]
    assert [s["modelURL"] for s in specs] == ["test/wide", "test/other"]
    for spec, planned in zip(specs, doc["memory"]["models"], strict=True):
        extra = spec["vllmConfig"]["extraArgs"]
        assert extra[extra.index("--kv-cache-memory-bytes") + 1] == str(planned["kv_cache_bytes"])
    names = [(o["kind"], o["metadata"]["name"]) for o in values["extraObjects"]]
    assert len(names) == len(set(names))  # the rules and the dashboard once, a sidecar per model
    assert sum(kind == "Deployment" for kind, _ in names) == 2
