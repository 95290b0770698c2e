"""The side-effecting edges of planning: which device, which checkpoint metadata.

``plan``, ``profiles``, ``doctor`` and ``launch`` share these. The decisions
themselves are pure (:mod:`entrypoint.plan`); this module only gathers their
inputs: NVML and ``/proc/meminfo``, the checkpoint's JSON from a local
directory, spark-serve's metadata cache or the Hub (never a weight byte), and
the architectures the installed vLLM implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import (
    HubAuthError,
    HubNotFoundError,
    HubUnreachableError,
    ModelUnavailableError,
    SettingError,
    SparkServeError,
)
from ..hub.locate import checkpoint_dir
from ..plan.checkpoint import CheckpointInfo, describe
from ..plan.derive import Derived, derive
from ..plan.families import load_families
from ..plan.hardware import Device, HardwareTable, load_table
from ..plan.memory import MemoryPlan, plan_memory
from ..plan.options import BY_NAME
from ..plan.profile import Catalog, LoadedProfile
from ..plan.resolve import Plan, builtin_defaults, read_raw, resolve, select
from ..plan.sizing import memory_inputs, refuse_unless_fits
from .device import choose, nvml_facts, read_meminfo
from .metadata import CheckpointMeta, cached_meta, hub_meta, local_meta


def hardware_for(env: Mapping[str, str], cli: Mapping[str, Any]) -> tuple[Device, HardwareTable]:
    table = load_table()
    raw = read_raw(BY_NAME["hardware"], env, cli)
    return choose(table, (raw[0], raw[2]) if raw else None, nvml_facts, read_meminfo), table


def checkpoint_meta(plan: Plan, *, offline: bool, retries: int) -> CheckpointMeta | None:
    """The checkpoint's metadata without its weights; None when it cannot be had
    without a download (offline and not cached). Raises the typed Hub errors."""
    if plan.model.path is not None:
        return local_meta(checkpoint_dir(plan.model.path))
    assert plan.model.repo is not None
    cached = cached_meta(plan.model.repo, plan.value("revision"))
    if cached is not None or offline:
        return cached
    from ..hub.locate import download_request

    return hub_meta(replace(download_request(plan, offline=False), retries=retries))


def info_from(meta: CheckpointMeta, plan: Plan) -> CheckpointInfo:
    where = plan.model.path or f"{plan.model.repo}@{plan.value('revision')}"
    return describe(meta.config, meta.hf_quant, path=where, has_weights=meta.weights.total > 0)


def memory_for(plan: Plan, device: Device, meta: CheckpointMeta, *, refuse: bool) -> MemoryPlan:
    inputs = memory_inputs(plan, device, meta.config, meta.weights)
    memory = plan_memory(device, inputs)
    if refuse:
        refuse_unless_fits(plan, device, inputs, memory)
    return memory


def derive_from(plan: Plan, meta: CheckpointMeta, device: Device, env: Mapping[str, str]) -> Derived:
    """The profile derived from the checkpoint of a plan that no profile names."""
    from ..engine.archs import vllm_architectures

    model = plan.model.repo or plan.model.path or ""
    return derive(
        meta,
        model=model,
        repo=plan.model.repo,
        revision=plan.value("revision"),
        device=device,
        table=load_families(),
        support=vllm_architectures(env),
    )


def as_loaded(derived: Derived) -> LoadedProfile:
    where = f"<derived from {derived.source}>"
    return LoadedProfile(
        derived.name, Path(where), derived.profile, derived.source, derived.reasons, derived.notes
    )


def _offline_snapshot_meta(plan: Plan) -> CheckpointMeta:
    """Offline with no cached metadata: the complete cached snapshot's own files."""
    from ..hub.download import ensure_snapshot
    from ..hub.locate import download_request

    return local_meta(ensure_snapshot(download_request(plan, offline=True), lambda *_, **__: None))


def derivation_meta(plan: Plan, *, offline: bool, retries: int, snapshot: bool) -> CheckpointMeta | None:
    """The metadata a derivation needs: cached, local or from the Hub; offline with
    ``snapshot``, a complete cached snapshot's own files (else its typed error)."""
    meta = checkpoint_meta(plan, offline=offline, retries=retries)
    if meta is None and offline and snapshot and plan.model.repo is not None:
        meta = _offline_snapshot_meta(plan)
    return meta


@dataclass(frozen=True)
class Resolved:
    plan: Plan
    derived: Derived | None = None
    meta: CheckpointMeta | None = None  # fetched for the derivation, reusable by the caller
    note: str | None = None  # why nothing was derived, when a Hub error was only noted


def resolve_checkpoint(
    catalog: Catalog,
    env: Mapping[str, str],
    cli: Mapping[str, Any],
    device: Device,
    table: HardwareTable,
    *,
    offline: bool,
    retries: int,
    snapshot: bool = False,
    lenient: bool = False,
) -> Resolved:
    """Resolve; when no profile names the model, derive one from the checkpoint's
    metadata first (before any weight byte). Offline, the metadata comes from the
    cache, or with ``snapshot`` from a complete cached snapshot (else its typed
    error); without metadata nothing is derived. With ``lenient`` a Hub error while
    fetching the metadata is a note instead (``plan``, ``doctor``)."""
    bare_env = {k: v for k, v in env.items() if k != BY_NAME["variant"].env}
    bare_cli = {**cli, "variant": None}  # a variant is checked once the profile is known
    if select(catalog, bare_env, bare_cli)[0] is not None:  # a profile names the model
        return Resolved(resolve(catalog, env, cli, device, table))
    plan = resolve(catalog, bare_env, bare_cli, device, table)  # for the metadata request
    try:
        meta = derivation_meta(plan, offline=offline, retries=retries, snapshot=snapshot)
    except (HubAuthError, HubNotFoundError, HubUnreachableError) as err:
        if not lenient:
            raise
        note = f"checkpoint metadata unavailable: {err.message}; no profile derived"
        return Resolved(resolve(catalog, env, cli, device, table), note=note)
    if meta is None:
        return Resolved(resolve(catalog, env, cli, device, table))
    derived = derive_from(plan, meta, device, env)
    return Resolved(resolve(catalog, env, cli, device, table, derived=as_loaded(derived)), derived, meta)


def catalog_for(env: Mapping[str, str], cli: Mapping[str, Any]) -> Catalog:
    raw = read_raw(BY_NAME["profiles_dir"], env, cli)
    catalog = Catalog.from_path_list(raw[0] if raw else builtin_defaults(env)["profiles_dir"])
    if not catalog.names():
        where = raw[2] if raw else "built-in profiles directory"
        dirs = ", ".join(str(d) for d in catalog.dirs) or "(none)"
        missing = [str(d) for d in catalog.dirs if not d.is_dir()]
        detail = f"{', '.join(missing)} does not exist" if missing else f"no *.yaml profile in {dirs}"
        raise SettingError(
            where, detail, "point PROFILES_DIR at directories holding profile files, e.g. configs/profiles"
        )
    return catalog


def _offline(env: Mapping[str, str]) -> bool:
    return env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Planned:
    plan: Plan
    memory: MemoryPlan | None
    note: str | None
    derived: Derived | None = None


def planned(env: Mapping[str, str], cli: Mapping[str, Any], *, network: bool) -> Planned:
    """Resolve for this hardware (deriving a profile when none names the model) and
    plan memory from whatever metadata can be had without downloading weights; a
    missing figure is a note, never a failure."""
    from ..plan.fit import fit_checkpoint
    from ..plan.sizing import apply_memory

    device, table = hardware_for(env, cli)
    offline = not network or _offline(env)
    found = resolve_checkpoint(
        catalog_for(env, cli), env, cli, device, table, offline=offline, retries=0, lenient=True
    )
    plan, derived = found.plan, found.derived
    if found.note is not None:
        return Planned(plan, None, found.note)
    try:
        meta = found.meta or checkpoint_meta(plan, offline=offline, retries=0)
    except ModelUnavailableError:
        raise  # a local path launch would refuse: plan refuses it too
    except SparkServeError as err:
        return Planned(plan, None, f"checkpoint metadata unavailable: {err.message}", derived)
    if meta is None:
        why = "checkpoint metadata is not cached and the Hub is not asked offline"
        if plan.profile is None:
            why += "; no profile derived"
        return Planned(plan, None, why, derived)
    plan = fit_checkpoint(plan, info_from(meta, plan), weights_required=False)
    memory = memory_for(plan, device, meta, refuse=False)
    note = f"from {meta.origin}"
    return Planned(apply_memory(plan, memory) if memory.fits else plan, memory, note, derived)
