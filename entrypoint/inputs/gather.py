"""Read what planning needs, once, and run the one chain.

The device (NVML and ``/proc/meminfo``), the profiles, the checkpoint's
metadata (a local directory, spark-serve's metadata cache or the Hub; never a
weight byte) and the architectures the installed vLLM implements are read
here; the decisions are pure (:mod:`entrypoint.plan`): resolve once (with the
profile derived from the metadata when none names the model), then
:func:`entrypoint.plan.chain.fitted`. ``plan``, ``doctor``, ``download``,
``launch`` and ``worker`` all start here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    HubAuthError,
    HubNotFoundError,
    HubUnreachableError,
    ModelUnavailableError,
    SettingError,
    SparkServeError,
)
from ..hub.locate import checkpoint_dir
from ..meta import CheckpointMeta, DownloadRequest
from ..plan.chain import Chained, fitted
from ..plan.hardware import Device, HardwareTable
from ..plan.measured import Calibration
from ..plan.options import BY_NAME, option_value, read_raw
from ..plan.profile import Catalog, LoadedProfile
from ..plan.resolve import ModelRef, Plan, resolve, select
from .device import choose, nvml_facts, read_meminfo
from .measured import read_calibration
from .metadata import cached_meta, hub_meta, local_meta
from .request import bare_request, download_request

if TYPE_CHECKING:
    from ..plan.derive import Derived

_HUB_ERRORS = (HubAuthError, HubNotFoundError, HubUnreachableError)


def hardware_for(env: Mapping[str, str], cli: Mapping[str, Any]) -> tuple[Device, HardwareTable]:
    from ..plan.hardware import load_table

    table = load_table()
    raw = read_raw(BY_NAME["hardware"], env, cli)
    return choose(table, (raw[0], raw[2]) if raw else None, nvml_facts, read_meminfo), table


def catalog_for(env: Mapping[str, str], cli: Mapping[str, Any]) -> Catalog:
    option = BY_NAME["profiles_dir"]
    raw = read_raw(option, env, cli)
    catalog = Catalog.from_path_list(raw[0] if raw else option.default_for(env))
    if not catalog.names():
        where = raw[2] if raw else "built-in profiles directory"
        dirs = ", ".join(str(d) for d in catalog.dirs) or "(none)"
        missing = [str(d) for d in catalog.dirs if not d.is_dir()]
        detail = f"{', '.join(missing)} does not exist" if missing else f"no *.yaml profile in {dirs}"
        raise SettingError(
            where, detail, "point PROFILES_DIR at directories holding profile files, e.g. configs/profiles"
        )
    return catalog


@dataclass(frozen=True)
class Reading:
    """How the metadata may be read: offline (cache only), with how many Hub
    retries; ``snapshot``: offline, a complete cached snapshot's own files serve
    a derivation; ``lenient``: a metadata failure is a note (``plan``, ``doctor``),
    and a plan that does not fit is shown rather than refused."""

    offline: bool
    retries: int
    snapshot: bool = False
    lenient: bool = False


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def read_meta(model: ModelRef, request: DownloadRequest | None, reading: Reading) -> CheckpointMeta | None:
    """The checkpoint's metadata without its weights; None when it cannot be had
    without a download (offline and not cached). Raises the typed Hub errors."""
    if model.path is not None:
        return local_meta(checkpoint_dir(model.path))
    assert request is not None
    cached = cached_meta(request.repo, request.revision)
    if cached is not None:
        return cached
    if not reading.offline:
        return hub_meta(replace(request, offline=False, retries=reading.retries))
    if reading.snapshot:  # offline, no cached metadata: the complete cached snapshot's own files
        from ..hub.download import ensure_snapshot

        return local_meta(ensure_snapshot(replace(request, offline=True), lambda *_, **__: None))
    return None


def derive_for(
    model: ModelRef, revision: str, meta: CheckpointMeta, device: Device, env: Mapping[str, str]
) -> Derived:
    """The profile derived from the checkpoint of a model that no profile names."""
    from ..engine.archs import vllm_architectures
    from ..plan.derive import derive
    from ..plan.families import load_families

    return derive(
        meta,
        model=model.repo or model.path or "",
        repo=model.repo,
        revision=revision,
        device=device,
        table=load_families(),
        support=vllm_architectures(env),
    )


def as_loaded(derived: Derived) -> LoadedProfile:
    where = f"<derived from {derived.source}>"
    return LoadedProfile(
        derived.name, Path(where), derived.profile, derived.source, derived.reasons, derived.notes
    )


def chained(plan: Plan, reading: Reading, calibration: Calibration | None = None) -> Chained:
    """A resolved plan through the rest of the chain, from the metadata that can be
    read for it (a missing figure is a note, never a failure)."""
    request = download_request(plan, offline=reading.offline) if plan.model.path is None else None
    try:
        meta = read_meta(plan.model, request, reading)
    except ModelUnavailableError:
        raise  # a local path launch would refuse: plan refuses it too
    except SparkServeError as err:
        if not reading.lenient:
            raise
        return Chained(plan, note=f"checkpoint metadata unavailable: {err.message}", calibration=calibration)
    if meta is None:
        why = "checkpoint metadata is not cached and the Hub is not asked offline"
        return Chained(plan, note=why, calibration=calibration)
    note = f"from {meta.origin}"
    return fitted(plan, meta, refuse=not reading.lenient, note=note, calibration=calibration)


def plan_chain(env: Mapping[str, str], cli: Mapping[str, Any], reading: Reading) -> Chained:
    """Read the device, the profiles and the checkpoint's metadata, resolve once
    (deriving a profile first when none names the model) and fit and size the plan."""
    device, table = hardware_for(env, cli)
    catalog = catalog_for(env, cli)
    calibration = read_calibration(option_value(BY_NAME["state_dir"], env, cli))
    bare_env = {k: v for k, v in env.items() if k != BY_NAME["variant"].env}
    bare_cli = {**cli, "variant": None}  # a variant is checked once the profile is known
    named, model, _ = select(catalog, bare_env, bare_cli)
    if named is not None:  # read after the download when offline and not cached
        return chained(
            resolve(catalog, env, cli, device, table), replace(reading, snapshot=False), calibration
        )
    request = bare_request(model, env, cli, offline=reading.offline) if model.path is None else None
    try:
        meta = read_meta(model, request, reading)
    except _HUB_ERRORS as err:
        if not reading.lenient:
            raise
        note = f"checkpoint metadata unavailable: {err.message}; no profile derived"
        return Chained(resolve(catalog, env, cli, device, table), note=note, calibration=calibration)
    if meta is None:
        why = "checkpoint metadata is not cached and the Hub is not asked offline; no profile derived"
        return Chained(resolve(catalog, env, cli, device, table), note=why, calibration=calibration)
    revision = option_value(BY_NAME["revision"], env, cli)
    derived = derive_for(model, revision, meta, device, env)
    plan = resolve(catalog, env, cli, device, table, derived=as_loaded(derived))
    note = f"from {meta.origin}"
    return fitted(plan, meta, refuse=not reading.lenient, derived=derived, note=note, calibration=calibration)


def planned(env: Mapping[str, str], cli: Mapping[str, Any], *, network: bool) -> Chained:
    """``plan`` and ``doctor``: the chain with whatever metadata can be had without
    downloading weights; a missing figure is a note, never a failure."""
    offline = not network or env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return plan_chain(env, cli, Reading(offline=offline, retries=0, lenient=True))


def for_launch(env: Mapping[str, str], cli: Mapping[str, Any]) -> Chained:
    """``launch``, ``download`` and ``worker``: the chain before any weight byte;
    a checkpoint that does not fit the device is refused here."""
    return plan_chain(env, cli, Reading(offline=hub_offline(), retries=5, snapshot=True))
