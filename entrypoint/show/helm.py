"""A plan → values for vLLM's production-stack Helm chart (``vllm-stack`` 0.1.12), pure.

The chart runs ``vllm serve <modelURL>`` itself from ``modelSpec`` entries (its
container ``command``, so this image's entrypoint is not used there); the
values carry this image, the profile's own engine flags (typed fields where the
chart has them, the rest in ``extraArgs``), its environment, the cache and
memory it needs, and Ray for more than one node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataMissingError, SecretExposedError
from ..plan.command import build_command, in_extra_args
from ..plan.memory import MemoryPlan
from ..plan.options import SECRET_ENV
from ..plan.redact import has_secret
from ..plan.resolve import Plan
from ..shipped import monitoring

CHART = "vllm-stack 0.1.12"
SECRET = "spark-serve"  # the Kubernetes Secret holding hf-token and api-key
_CHART_OWNS = ("--host", "--port", "--revision")  # set by the chart from its own values
_TYPED: dict[str, tuple[str, type]] = {
    "--max-model-len": ("maxModelLen", int),
    "--gpu-memory-utilization": ("gpuMemoryUtilization", float),
    "--max-num-seqs": ("maxNumSeqs", int),
    "--tensor-parallel-size": ("tensorParallelSize", int),
    "--dtype": ("dtype", str),
}
_SWITCHES = {
    "--enable-prefix-caching": ("enablePrefixCaching", True),
    "--no-enable-prefix-caching": ("enablePrefixCaching", False),
}


def _name(plan: Plan) -> str:
    raw = plan.profile.name if plan.profile else str(plan.value("served_model_name"))
    cleaned = "".join(c if c.isalnum() else "-" for c in raw.lower()).strip("-")
    return cleaned[:40] or "model"


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` → (repository, tag); a registry port is not a tag."""
    head, _, tail = image.rpartition(":")
    if head and "/" not in tail:
        return head, tail
    return image, "latest"


def vllm_config(argv: list[str]) -> dict[str, Any]:
    """The engine flags after the model: typed chart fields, the rest as ``extraArgs``."""
    config: dict[str, Any] = {}
    extra: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if word in _CHART_OWNS:
            i += 2
        elif word in _TYPED and value is not None:
            key, kind = _TYPED[word]
            config[key] = kind(value)
            i += 2
        elif word in _SWITCHES:
            key, flag = _SWITCHES[word]
            config[key] = flag
            i += 1
        else:
            extra.append(word)
            i += 1
    # The chart passes --no-enable-prefix-caching unless this is true: keep vLLM's default (on).
    config.setdefault("enablePrefixCaching", True)
    config["extraArgs"] = extra
    return config


def monitoring_files(env: Mapping[str, str]) -> tuple[Any, str]:
    """The alert rules document and the Grafana dashboard from ``MONITORING_DIR`` or,
    by default, the ``monitoring/`` that ships in the package; DataMissingError (exit
    29) names the file that is not there."""
    import yaml

    folder = Path(env.get("MONITORING_DIR") or monitoring())
    alerts, board = folder / "alerts.yml", folder / "grafana" / "dashboards" / "spark-serve.json"
    for path, what in ((alerts, "alert rules"), (board, "Grafana dashboard")):
        if not path.is_file():
            raise DataMissingError(str(path), what)
    return yaml.safe_load(alerts.read_text(encoding="utf-8")), board.read_text(encoding="utf-8")


def _gi(n: float) -> str:
    return f"{max(math.ceil(n / 2**30), 1)}Gi"


def sidecar_objects(
    release: str, name: str, image: str, api_key: bool, rules: Any, dashboard: str | None
) -> list[dict[str, Any]]:
    """spark-serve's sidecar beside the model's engine (its own Deployment: the chart has no
    second container per model), our alert rules and our dashboard, as ``extraObjects``."""
    repository, tag = split_image(image)
    full = f"{release}-{name}-spark-serve"
    labels = {"app.kubernetes.io/name": "spark-serve-sidecar", "model": name}
    env: list[dict[str, Any]] = [
        {"name": "VLLM_URL", "value": f"http://{release}-{name}-engine-service:80"},
        {"name": "LAUNCHER", "value": "0"},
        {"name": "SIDECAR_PORT", "value": "8001"},
    ]
    if api_key:
        key = {"secretKeyRef": {"name": SECRET, "key": "api-key"}}
        env.append({"name": "API_KEY", "valueFrom": key})
    live = {"httpGet": {"path": "/health/live", "port": "ops"}, "periodSeconds": 15}
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": full, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "sidecar",
                                "image": f"{repository}:{tag}",
                                "args": ["sidecar"],
                                "env": env,
                                "ports": [{"name": "ops", "containerPort": 8001}],
                                "livenessProbe": live,
                                "readinessProbe": dict(live),
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": full, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "ops", "port": 8001, "targetPort": "ops"}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": full, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "endpoints": [{"port": "ops", "path": "/metrics", "interval": "15s"}],
            },
        },
    ]
    if rules:
        objects.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": {"name": f"{release}-spark-serve-rules"},
                "spec": rules,
            }
        )
    if dashboard:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{release}-spark-serve-dashboard",
                    "labels": {"grafana_dashboard": "1"},
                },
                "data": {"spark-serve.json": dashboard},
            }
        )
    return objects


def _refuse_secret_flags(plan: Plan) -> None:
    """A secret flag in the extra arguments would land in ``extraArgs`` in plain text."""
    hit = in_extra_args(plan, has_secret)
    if hit is None:
        return
    where, flag = hit
    raise SecretExposedError(
        f"plan --format helm-values: {where}",
        flag,
        "a secret, which the values would hold in plain text",
        f"remove {flag}; set API_KEY or HF_TOKEN instead, which the values reference as the "
        f"Kubernetes Secret {SECRET} rather than hold",
    )


def helm_values(
    plan: Plan,
    environ: Mapping[str, str],
    memory: MemoryPlan | None,
    image: str,
    release: str = "spark-serve",
    rules: Any = None,
    dashboard: str | None = None,
) -> dict[str, Any]:
    """Values for one model of the chart from ``plan``, with spark-serve's sidecar, rules and
    dashboard beside it (``rules``: the alert groups document; ``dashboard``: Grafana JSON)."""
    model = plan.model.repo or plan.model.path or ""
    nodes = int(plan.value("cluster_nodes") or 1)
    cluster_args = ["--tensor-parallel-size", str(nodes)] if nodes > 1 else []
    _refuse_secret_flags(plan)
    command = build_command(plan, model, environ, cluster_args)
    after_model = command.argv[command.argv.index(model) + 1 :]
    repository, tag = split_image(image)
    weights = memory.weights_bytes if memory else None
    need = memory.needed_bytes + memory.kv_cache_bytes if memory else None
    spec: dict[str, Any] = {
        "name": _name(plan),
        "repository": repository,
        "tag": tag,
        "modelURL": model,
        "replicaCount": 1,
        "requestCPU": 4,
        "requestGPU": 1,
        "shmSize": "8Gi",
        "vllmConfig": vllm_config(after_model),
        "env": [
            {"name": k, "value": str(v)}
            for k, v in sorted(command.shown_env().items())
            if k not in SECRET_ENV
        ],
    }
    if plan.model.repo:
        spec["modelRevision"] = str(plan.value("revision"))
    if need is not None:
        spec["requestMemory"] = _gi(need)
    if weights is not None:
        spec["pvcStorage"] = _gi(weights * 1.5 + 2**30)
        spec["pvcAccessMode"] = ["ReadWriteOnce"]
    if plan.value("hf_token"):
        spec["hf_token"] = {"secretName": SECRET, "secretKey": "hf-token"}
    if nodes > 1:
        spec["raySpec"] = {"enabled": True, "headNode": {"requestCPU": 4, "requestGPU": 1}}
        if need is not None:
            spec["raySpec"]["headNode"]["requestMemory"] = _gi(need)

    def probe(**timing: int) -> dict[str, Any]:
        return {"httpGet": {"path": "/health", "port": 8000}, **timing}

    engine: dict[str, Any] = {
        "enableEngine": True,
        "containerPort": 8000,
        "servicePort": 80,
        # A first start downloads the checkpoint and builds kernels: up to an hour.
        "startupProbe": probe(initialDelaySeconds=30, periodSeconds=10, failureThreshold=360),
        "readinessProbe": probe(periodSeconds=5, failureThreshold=3),
        "livenessProbe": probe(periodSeconds=10, failureThreshold=3),
        "modelSpec": [spec],
    }
    if plan.value("api_key"):
        engine["vllmApiKey"] = {"secretName": SECRET, "secretKey": "api-key"}
    extra = sidecar_objects(release, spec["name"], image, bool(plan.value("api_key")), rules, dashboard)
    return {"servingEngineSpec": engine, "extraObjects": extra}


def helm_values_for_set(
    members: Sequence[tuple[Plan, Mapping[str, str], MemoryPlan | None]],
    image: str,
    release: str = "spark-serve",
    rules: Any = None,
    dashboard: str | None = None,
) -> dict[str, Any]:
    """``MODELS``: one ``modelSpec`` per model (the chart's router routes by the request's
    model), each with the KV and utilization of the joint plan and a sidecar of its own;
    the rules and the dashboard once."""
    each = [helm_values(plan, env, memory, image, release, rules, dashboard) for plan, env, memory in members]
    values = each[0]
    values["servingEngineSpec"]["modelSpec"] = [v["servingEngineSpec"]["modelSpec"][0] for v in each]
    seen: set[tuple[str, str]] = set()
    objects: list[dict[str, Any]] = []
    for obj in (o for v in each for o in v["extraObjects"]):
        key = (obj["kind"], obj["metadata"]["name"])
        if key not in seen:
            seen.add(key)
            objects.append(obj)
    values["extraObjects"] = objects
    return values
