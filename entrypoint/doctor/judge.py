"""The pure half of ``doctor``: facts → lines, each ok / warn / fail with its fix.

A ``fail`` is blocking: ``spark-serve launch`` would refuse, wait or fail with
it. A ``warn`` starts, but slower or with less than it could.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ..engine.versions import RIGHT_TAG, TESTED, TESTED_TORCH_CUDA
from ..plan.hardware import GB
from .gather import Facts

DROP_CACHES = "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches"


@dataclass(frozen=True)
class Line:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def gpu(f: Facts) -> Iterator[Line]:
    device = f.plan.device if f.plan else None
    if f.gpu is None:
        named = ""
        if device is not None and device.key != "cpu" and device.source not in ("NVML", "/proc/meminfo"):
            named = f"; planning for {device.key} ({device.source})"
        yield Line(
            "gpu",
            "warn",
            "no NVIDIA GPU through NVML" + named,
            "install the NVIDIA driver and Container Toolkit, and give the container the GPU "
            "(compose reserves it); without one only vLLM's CPU build can serve",
        )
        return
    cc = f"SM {f.gpu.compute_capability:g}" if f.gpu.compute_capability is not None else "SM unknown"
    more = f" (+{f.gpu.count - 1} more)" if f.gpu.count > 1 else ""
    yield Line("gpu", "ok", f"{f.gpu.name}{more}, {cc}")
    cuda = f.gpu.cuda_driver
    detail = f"driver {f.gpu.driver or 'unknown'}, CUDA {cuda or 'unknown'}"
    major = int(cuda.split(".")[0]) if cuda and cuda.split(".")[0].isdigit() else None
    if major is not None and major < TESTED_TORCH_CUDA:
        yield Line(
            "driver",
            "fail",
            detail + f"; the image's CUDA {TESTED_TORCH_CUDA} needs a newer driver",
            f"update the NVIDIA driver to one for CUDA {TESTED_TORCH_CUDA} (580 or newer)",
        )
    else:
        yield Line("driver", "ok", detail)


def hardware(f: Facts) -> Iterator[Line]:
    if f.plan is None or f.plan.device is None:
        return
    d = f.plan.device
    fp4 = "native FP4" if d.native_fp4 else "not native FP4: NVFP4 runs weight-only (Marlin)"
    available = f", {gb(d.available_bytes)} available" if d.available_bytes is not None else ""
    yield Line("hardware", "ok", f"{d.key}: {gb(d.total_bytes)} {d.memory}{available}; {fp4} [{d.source}]")


def memory(f: Facts) -> Iterator[Line]:
    info = f.meminfo
    avail, free = info.get("MemAvailable"), info.get("MemFree")
    cache = info.get("Cached", 0) + info.get("Buffers", 0)
    if avail is None:
        yield Line("memory", "warn", "/proc/meminfo is unreadable", "run doctor where /proc is mounted")
        return
    where = f"MemAvailable {gb(avail)}, MemFree {gb(free or 0)}, page cache {gb(cache)}"
    need = f.need_bytes
    kind = f.memory.memory_kind if f.memory else None
    if need is None or kind == "dedicated":
        yield Line("memory", "ok", where)
    elif avail < need:
        yield Line(
            "memory",
            "fail",
            f"{where}; the engine needs {gb(need)} to start",
            "stop what holds memory (another engine, a crashed container: docker ps); the launcher "
            "waits MEMORY_WAIT_S for it, then halts",
        )
    elif kind == "unified" and free is not None and free < need:
        yield Line(
            "page cache",
            "warn",
            f"{where}; the engine's {gb(need)} must come partly out of page cache, "
            "which CUDA's own free figure leaves out",
            f"on the host: {DROP_CACHES}",
        )
    else:
        yield Line("memory", "ok", f"{where}; the engine needs {gb(need)}")


def plan(f: Facts) -> Iterator[Line]:
    if f.plan_error is not None:
        yield Line("profile", "fail", f.plan_error.message, f.plan_error.fix or "")
        return
    assert f.plan is not None
    p = f.plan
    name = p.profile.name if p.profile else (p.model.repo or p.model.path or "")
    variant = f" variant {p.variant}" if p.variant else ""
    derived = f" (derived from {p.profile.derived_from})" if p.profile and p.profile.derived_from else ""
    yield Line("profile", "ok", f"{name}{variant} → {p.model.repo or p.model.path}{derived}")
    m = f.memory
    if m is None:
        yield Line(
            "memory plan", "warn", f.memory_note or "no memory plan", "plan once online, or download first"
        )
        return
    figures = (
        f"weights {gb(m.weights_bytes)} + KV {gb(m.kv_cache_bytes)} ({m.kv_cache_tokens:,} tokens, "
        f"{m.max_concurrent_sequences} sequences at {m.max_model_len:,}) + allowance {gb(m.allowance_bytes)}"
        f" of {gb(m.budget_bytes)}"
    )
    if m.fits:
        yield Line("memory plan", "ok", figures)
    else:
        yield Line(
            "memory plan",
            "fail",
            f"needs {gb(m.needed_bytes)}, budget {gb(m.budget_bytes)}",
            "see 'spark-serve plan' for what would fit (MAX_MODEL_LEN, MAX_NUM_SEQS, KV_CACHE_DTYPE=fp8)",
        )


def disk(f: Facts) -> Iterator[Line]:
    if f.disk_free is None:
        return
    where = f"{gb(f.disk_free)} free on {f.cache_dir}"
    if f.download_bytes is None:
        yield Line(
            "disk", "warn", f"{where}; download size unknown", "run doctor online to size the download"
        )
    elif f.download_bytes > f.disk_free:
        yield Line(
            "disk",
            "fail",
            f"{where}; the checkpoint needs {gb(f.download_bytes)}",
            "free space on the cache volume or point HF_HOME at a larger disk",
        )
    else:
        need = "checkpoint cached" if f.download_bytes == 0 else f"download needs {gb(f.download_bytes)}"
        yield Line("disk", "ok", f"{where}; {need}")


def hub(f: Facts) -> Iterator[Line]:
    h = f.hub
    cached = h.snapshot_complete
    user = f" (token of {h.user})" if h.user else ""
    if h.status in ("local", "ok"):
        yield Line("hub", "ok", h.detail + user)
    elif h.status == "offline":
        status = "ok" if cached else "fail"
        yield Line(
            "hub",
            status,
            h.detail + ("; the cached snapshot is complete" if cached else "; no complete cached snapshot"),
            "" if cached else "unset HF_HUB_OFFLINE for one start to download it",
        )
    elif h.status == "unreachable":
        yield Line(
            "hub",
            "warn" if cached else "fail",
            f"the Hub is not reachable ({h.detail})"
            + ("; the cached snapshot can be served" if cached else ""),
            "check the network / proxy (HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to serve the cache",
        )
    elif h.status == "token-rejected":
        yield Line("hub", "fail", h.detail, "set HF_TOKEN to a valid token (huggingface.co/settings/tokens)")
    elif h.status == "no-access":
        yield Line("hub", "fail", h.detail, "accept the model's licence on its Hub page, and set HF_TOKEN")
    else:
        yield Line("hub", "fail", h.detail, "check MODEL (owner/name) and MODEL_REVISION")


def versions(f: Facts) -> Iterator[Line]:
    on_gpu = f.gpu is not None
    tag = RIGHT_TAG.format(vllm=TESTED["vllm"])
    for name, wanted in TESTED.items():
        found = f.versions.get(name)
        if found is None:
            yield Line(name, "fail" if on_gpu else "warn", "not installed", f"use the image built on {tag}")
            continue
        dist, version = found
        label = f"{dist} {version}"
        if version.split("+")[0] != wanted:
            yield Line(name, "warn", f"{label}; tested with {wanted}", f"build on {tag}")
        elif dist != name:
            yield Line(
                name, "warn", f"{label} (CPU build: tests only)", f"on a GPU use the image built on {tag}"
            )
        else:
            yield Line(name, "ok", label)
    torch = f.versions.get("torch")
    cuda = f.torch_cuda
    detail = f"torch {torch[1] if torch else 'not installed'}, CUDA {cuda or 'none (CPU build)'}"
    major = int(cuda.split(".")[0]) if cuda and cuda.split(".")[0].isdigit() else None
    if major == TESTED_TORCH_CUDA:
        yield Line("torch", "ok", detail)
    else:
        yield Line(
            "torch",
            "fail" if on_gpu else "warn",
            detail + f"; GB10 needs a CUDA {TESTED_TORCH_CUDA} build",
            f"use the image built on {tag}",
        )


def caches(f: Facts) -> Iterator[Line]:
    for what, variable, path, files in f.caches:
        if files:
            yield Line("cache", "ok", f"{what} warm: {files}{'+' if files >= 1000 else ''} files in {path}")
        else:
            yield Line(
                "cache",
                "warn",
                f"{what} cold ({path} {'is empty' if files == 0 else 'does not exist'})",
                f"the first start compiles (minutes); keep {variable} on a volume so later starts are warm",
            )


def ports(f: Facts) -> Iterator[Line]:
    for p in f.ports:
        where = f"{p.name} port {p.port}"
        if p.status == "free":
            yield Line("port", "ok", f"{where} is free")
        elif p.status == "engine":
            yield Line("port", "ok", f"{where} in use: {p.detail}")
        else:
            yield Line("port", "fail", f"{where}: {p.detail}", f"stop what listens there or set {p.variable}")


def exposure(f: Facts) -> Iterator[Line]:
    e = f.api_exposure
    if e is None:
        return
    where = f"the API listens on {e.address or 'every interface'} ({e.variable})"
    if e.loopback:
        yield Line("exposure", "ok", f"{where}: this machine only")
    elif e.keyed:
        yield Line("exposure", "ok", f"{where}, and every route but /health and /metrics asks for API_KEY")
    else:
        yield Line(
            "exposure",
            "warn",
            f"{where} with no API_KEY: anyone who reaches it can generate",
            "set API_KEY (or write ./secrets/api_key), or keep the API on loopback (API_BIND=127.0.0.1)",
        )


def launcher(f: Facts) -> Iterator[Line]:
    state = f.launcher
    if not state:
        return
    phase = str(state.get("phase"))
    waiting = state.get("waiting") or {}
    if phase == "halted":
        yield Line(
            "launcher",
            "fail",
            f"halted: {waiting.get('reason') or state.get('error')}",
            str(waiting.get("fix") or "run 'spark-serve reset'"),
        )
    elif phase in ("waiting-for-memory", "backing-off"):
        yield Line("launcher", "warn", f"{phase}: {waiting.get('reason', '')}", "see the memory line above")
    elif phase == "failed":
        yield Line("launcher", "warn", f"last launch failed: {state.get('error')}", "fix it and start again")
    else:
        yield Line("launcher", "ok", f"phase {phase}")


def heal(f: Facts) -> Iterator[Line]:
    """The sidecar's last heal of a hung engine, and where its evidence is."""
    last = f.last_heal
    if not last:
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(last.get("at") or 0)))
    evidence = last.get("evidence") or "not written (STATE_DIR was read-only)"
    yield Line(
        "heal",
        "warn",
        f"last heal {when} (engine start {last.get('start_id')}, {last.get('signal')}): {last.get('reason')}",
        f"read the evidence in {evidence}; the engine's Python stacks are in its log "
        "('Fatal Python error: Aborted' in docker compose logs vllm)",
    )


def calibration(f: Facts) -> Iterator[Line]:
    """The newest real start of this plan, planned against measured."""
    if f.plan is None:
        return
    from ..show.plan import measured_doc

    found = measured_doc(f.plan, f.calibration)
    if found is None:
        yield Line(
            "calibration", "ok", "no start of this plan measured yet (the plan uses the hardware table)"
        )
        return
    where = f"start {found['start_id']} ({found['date']})"
    if found["warnings"]:
        yield Line(
            "calibration",
            "warn",
            f"{where}: " + "; ".join(found["warnings"]),
            "the next start plans with the measured figures (`spark-serve plan` shows them); if a figure "
            "stays apart, report it with `spark-serve plan --json`",
        )
    else:
        figures = ", ".join(row["figure"] for row in found["figures"]) or "nothing comparable"
        yield Line("calibration", "ok", f"{where}: planned within 10 % of measured ({figures})")


SECTIONS = (
    gpu,
    hardware,
    memory,
    plan,
    calibration,
    disk,
    hub,
    versions,
    caches,
    ports,
    exposure,
    launcher,
    heal,
)


def judge(facts: Facts) -> list[Line]:
    return [line for section in SECTIONS for line in section(facts)]
