"""Values for vLLM's production-stack chart from the profiles, checked against its schema."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from entrypoint.plan.command import build_command
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import resolve
from entrypoint.show.helm import helm_values, split_image, vllm_config
from tests.conftest import PROFILES, REPO, clean_env, run_cli

CHART = REPO.parent / "shared" / "schemas" / "vllm-production-stack"
CATALOG = Catalog([PROFILES])


def _schema() -> dict[str, Any]:
    if not (CHART / "values.schema.json").is_file():
        pytest.skip(
            f"{CHART} is absent: the chart's values schema (vllm-stack 0.1.12) ships in ../shared/schemas"
        )
    return dict(json.loads((CHART / "values.schema.json").read_text()))


def _render(profile: str, **env: str) -> dict[str, Any]:
    result = run_cli(
        ["plan", "--profile", profile, "--format", "helm-values"],
        clean_env(
            HF_HUB_OFFLINE="1",
            HARDWARE="gb10",
            SPARK_SERVE_IMAGE="registry.local:5000/spark-serve:0.1.0",
            **env,
        ),
    )
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("# vllm-stack 0.1.12 values")
    return dict(yaml.safe_load(result.stdout))


@pytest.mark.parametrize("profile", [p.name for p in CATALOG.all()])
def test_every_profile_renders_values_the_charts_schema_accepts(profile: str) -> None:
    schema = _schema()
    values = _render(profile)
    jsonschema.validate(values, schema)
    (spec,) = values["servingEngineSpec"]["modelSpec"]
    assert (spec["repository"], spec["tag"]) == ("registry.local:5000/spark-serve", "0.1.0")
    assert spec["modelURL"] == CATALOG.get(profile).profile.repo
    assert values["servingEngineSpec"]["startupProbe"]["failureThreshold"] * 10 >= 3600


def test_the_values_carry_the_profiles_own_argv_not_a_copy() -> None:
    plan = resolve(CATALOG, {"VARIANT": "long-context"}, {"profile": "axe-strada-28b-nvfp4a16"})
    argv = build_command(plan, plan.model.repo or "", {}).argv
    values = helm_values(plan, {}, None, "spark-serve:0.1.0")
    config = values["servingEngineSpec"]["modelSpec"][0]["vllmConfig"]
    flags = {
        "maxModelLen": "--max-model-len",
        "gpuMemoryUtilization": "--gpu-memory-utilization",
        "maxNumSeqs": "--max-num-seqs",
        "dtype": "--dtype",
    }
    rebuilt = list(config["extraArgs"])
    for key, flag in flags.items():
        if key in config:
            rebuilt += [flag, str(config[key])]
    switch = "--enable-prefix-caching" if config["enablePrefixCaching"] else "--no-enable-prefix-caching"
    if switch in argv:  # else the chart's own default switch, set to vLLM's
        rebuilt.append(switch)
    after_model = argv[argv.index(plan.model.repo or "") + 1 :]
    owned = {"--host", "--port", "--revision"}
    expected = [w for i, w in enumerate(after_model) if w not in owned and after_model[i - 1] not in owned]
    assert Counter(rebuilt) == Counter(expected)
    assert "--kv-cache-dtype" in config["extraArgs"] and "--reasoning-parser" in config["extraArgs"]


def test_a_cluster_profile_asks_for_ray_and_tensor_parallelism() -> None:
    values = _render("ax-3.1-nvfp4", CLUSTER_NODES="2", HF_TOKEN="hf_x", API_KEY="k")
    jsonschema.validate(values, _schema())
    spec = values["servingEngineSpec"]["modelSpec"][0]
    assert spec["raySpec"]["enabled"] is True and spec["raySpec"]["headNode"]["requestGPU"] == 1
    assert spec["vllmConfig"]["tensorParallelSize"] == 2
    assert spec["hf_token"] == {"secretName": "spark-serve", "secretKey": "hf-token"}
    assert values["servingEngineSpec"]["vllmApiKey"]["secretKey"] == "api-key"
    assert "hf_x" not in json.dumps(values) and '"k"' not in json.dumps(values)


def test_image_names_split_at_the_tag_not_a_registry_port() -> None:
    assert split_image("registry.local:5000/spark-serve") == ("registry.local:5000/spark-serve", "latest")
    assert split_image("spark-serve:0.1.0") == ("spark-serve", "0.1.0")


def test_switches_map_to_typed_fields() -> None:
    config = vllm_config(["--enable-prefix-caching", "--max-num-seqs", "8", "--port", "8000", "--x"])
    assert config == {"enablePrefixCaching": True, "maxNumSeqs": 8, "extraArgs": ["--x"]}
    # the chart turns prefix caching off unless told: vLLM's default (on) is kept
    assert vllm_config(["--x"])["enablePrefixCaching"] is True
    assert vllm_config(["--no-enable-prefix-caching"])["enablePrefixCaching"] is False


def test_the_shipped_example_values_are_current(tmp_path: Path) -> None:
    shipped = REPO / "deploy" / "kubernetes" / "values-ax-3.1-nvfp4.yaml"
    rendered = run_cli(
        ["plan", "--profile", "ax-3.1-nvfp4", "--format", "helm-values"],
        clean_env(HF_HUB_OFFLINE="1", HARDWARE="gb10"),
    )
    assert rendered.code == 0, rendered.stderr
    assert shipped.read_text() == rendered.stdout, "regenerate: see deploy/kubernetes/README.md"


def test_the_sidecar_rules_and_dashboard_go_beside_the_engine() -> None:
    values = _render("qwen3-4b-nvfp4", API_KEY="k")
    objects = {o["kind"]: o for o in values["extraObjects"]}
    assert set(objects) == {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    name = values["servingEngineSpec"]["modelSpec"][0]["name"]
    # the chart's engine Service is "<release>-<model>-engine-service" on its servicePort
    assert env["VLLM_URL"] == f"http://spark-serve-{name}-engine-service:80"
    assert values["servingEngineSpec"]["servicePort"] == 80
    assert env["LAUNCHER"] == "0" and env["API_KEY"] == {
        "secretKeyRef": {"name": "spark-serve", "key": "api-key"}
    }
    assert container["args"] == ["sidecar"] and container["image"] == "registry.local:5000/spark-serve:0.1.0"
    alerts = yaml.safe_load((REPO / "monitoring" / "alerts.yml").read_text())
    assert objects["PrometheusRule"]["spec"] == alerts
    dashboard = json.loads(objects["ConfigMap"]["data"]["spark-serve.json"])
    assert dashboard == json.loads(
        (REPO / "monitoring" / "grafana" / "dashboards" / "spark-serve.json").read_text()
    )
    assert objects["ConfigMap"]["metadata"]["labels"] == {"grafana_dashboard": "1"}


def test_the_release_name_reaches_the_sidecars_engine_url() -> None:
    result = run_cli(
        ["plan", "--profile", "qwen3-4b-nvfp4", "--format", "helm-values", "--release", "fleet"],
        clean_env(HF_HUB_OFFLINE="1", HARDWARE="gb10"),
    )
    assert result.code == 0, result.stderr
    assert "http://fleet-qwen3-4b-nvfp4-engine-service:80" in result.stdout
