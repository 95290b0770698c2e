"""Resolution: defaults < profile < variant < environment < CLI flags.

Pure: takes the environment and CLI values as mappings, returns a
:class:`Plan` in which every setting records where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import (
    ConflictError,
    HardwareUnsupportedError,
    ProfileInvalidError,
    SettingError,
    UnknownProfileError,
)
from .hardware import Device, HardwareTable
from .memory import vllm_default_batching
from .options import BY_NAME, OPTIONS, parse_option, read_raw
from .profile import REPO_ID_PATTERN, Catalog, LoadedProfile, VllmOptions, check_variant, suggest

DEFAULT_PROFILE = "qwen3-4b-nvfp4"
ENGINE_FIELDS: tuple[str, ...] = tuple(n for n in VllmOptions.model_fields if n != "extra_args")
BACKEND_FIELDS = ("linear_backend", "moe_backend")
_REPO_RE = re.compile(REPO_ID_PATTERN)


def builtin_defaults(env: Mapping[str, str]) -> dict[str, Any]:
    """Every option's declared default, and the profile's extra arguments (none)."""
    found = {o.name: o.default_for(env) for o in OPTIONS}
    return {**{k: v for k, v in found.items() if v is not None}, "extra_args": []}


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # default | profile | variant | env | cli | checkpoint
    origin: str  # the file field, variable or flag it came from


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "profile" | "repo" | "path"
    repo: str | None
    path: str | None


@dataclass(frozen=True)
class Plan:
    profile: LoadedProfile | None
    variant: str | None
    model: ModelRef
    settings: dict[str, Setting]
    engine_env: dict[str, Setting] = field(default_factory=dict)
    device: Device | None = None

    def value(self, name: str) -> Any:
        setting = self.settings.get(name)
        return None if setting is None else setting.value

    def with_setting(self, name: str, setting: Setting) -> Plan:
        return replace(self, settings={**self.settings, name: setting})


def _looks_like_path(value: str) -> bool:
    if value.startswith(("/", "./", "../", "~")):
        return True
    try:
        return Path(value).exists()
    except OSError:  # a name too long to be a path: not one
        return False


def select(
    catalog: Catalog,
    env: Mapping[str, str],
    cli: Mapping[str, str | None],
    derived: LoadedProfile | None = None,
) -> tuple[LoadedProfile | None, ModelRef, str | None]:
    """Pick the profile (``derived`` when no profile names the model), the checkpoint
    and the variant."""
    loaded, model = _select_model(catalog, env, cli)
    if loaded is None and derived is not None:
        loaded = derived
    return loaded, model, _select_variant(loaded, read_raw(BY_NAME["variant"], env, cli))


def _select_model(
    catalog: Catalog, env: Mapping[str, str], cli: Mapping[str, str | None]
) -> tuple[LoadedProfile | None, ModelRef]:
    profile_raw = read_raw(BY_NAME["profile"], env, cli)
    model_raw = read_raw(BY_NAME["model"], env, cli)
    if profile_raw is not None:
        loaded = catalog.get(profile_raw[0], where=profile_raw[2])
        if model_raw is not None:
            return loaded, _checkpoint_ref(model_raw)
        return loaded, ModelRef("profile", loaded.profile.repo, None)
    if model_raw is None:
        loaded = catalog.get(DEFAULT_PROFILE, where="default profile")
        return loaded, ModelRef("profile", loaded.profile.repo, None)
    value, _, origin = model_raw
    if value in catalog.names():
        loaded = catalog.get(value, where=origin)
        return loaded, ModelRef("profile", loaded.profile.repo, None)
    if _looks_like_path(value):
        return None, ModelRef("path", None, str(Path(value).expanduser()))
    if _REPO_RE.match(value):
        by_repo = catalog.find_by_repo(value)
        if by_repo is not None:
            return by_repo, ModelRef("profile", by_repo.profile.repo, None)
        return None, ModelRef("repo", value, None)
    known = catalog.names()
    raise UnknownProfileError("profile", value, known, where=origin, suggestion=suggest(value, known))


def _select_variant(loaded: LoadedProfile | None, raw: tuple[str, str, str] | None) -> str | None:
    if raw is not None and loaded is None:
        raise ConflictError(
            ["VARIANT"],
            f"{raw[2]} is set but MODEL names no profile and none could be derived (no checkpoint metadata)",
            "unset VARIANT, or set PROFILE to a profile that has this variant",
        )
    if loaded is None:
        return None
    if raw is not None:
        check_variant(loaded, raw[0], where=raw[2])
        return raw[0]
    default = loaded.profile.default_variant  # validated against variants by the schema
    return default


def _checkpoint_ref(raw: tuple[str, str, str]) -> ModelRef:
    value, _, origin = raw
    if _looks_like_path(value):
        return ModelRef("path", None, str(Path(value).expanduser()))
    if _REPO_RE.match(value):
        return ModelRef("repo", value, None)
    raise SettingError(
        origin,
        f"'{value}' is neither a local path nor a Hub repo id",
        "with PROFILE set, MODEL must be 'owner/name' or a checkpoint directory",
    )


def _layer(
    settings: dict[str, Setting],
    values: dict[str, Any],
    source: str,
    origin: str,
    reasons: Mapping[str, str] | None = None,
    key: str = "",
) -> None:
    """Put ``values`` over ``settings``. With ``reasons`` (a derived profile) each
    setting's origin is the reason for ``key + name``."""
    for name, value in values.items():
        if value is None or value == []:
            continue
        if name == "extra_args":
            previous = settings["extra_args"].value if "extra_args" in settings else []
            value = [*previous, *value]
        why = reasons.get(f"{key}{name}") if reasons is not None else None
        settings[name] = Setting(value, source, why or f"{origin}{name}")


def resolve(
    catalog: Catalog,
    env: Mapping[str, str],
    cli: Mapping[str, str | None],
    device: Device | None = None,
    table: HardwareTable | None = None,
    derived: LoadedProfile | None = None,
) -> Plan:
    """The plan for this environment and CLI. ``derived`` is the profile derived
    from the checkpoint, used when no profile names the model."""
    loaded, model, variant = select(catalog, env, cli, derived)
    settings: dict[str, Setting] = {
        name: Setting(value, "default", "built-in default") for name, value in builtin_defaults(env).items()
    }
    engine_env: dict[str, Setting] = {}
    if loaded is not None:
        prof, path = loaded.profile, loaded.path
        why = loaded.reasons if loaded.derived_from else None
        source = "checkpoint" if loaded.derived_from else "profile"
        top: dict[str, Any] = {"served_model_name": prof.served_model_name}
        if not loaded.derived_from:  # a derived profile's revision is the one asked for
            top["revision"] = prof.revision
        _layer(settings, top, source, f"{path}: ", why)
        if prof.cluster.parallel:
            settings["cluster_parallel"] = Setting(prof.cluster.parallel, source, f"{path}: cluster.parallel")
        _layer(settings, prof.vllm.model_dump(exclude_none=True), source, f"{path}: vllm.", why, "vllm.")
        engine_env.update({k: Setting(v, "profile", f"{path}: env.{k}") for k, v in prof.env.items()})
        if variant is not None:
            var = prof.variants[variant]
            _layer(
                settings,
                var.vllm.model_dump(exclude_none=True),
                "variant",
                f"{path}: variants.{variant}.vllm.",
                why,
                f"variants.{variant}.vllm.",
            )
            engine_env.update(
                {k: Setting(v, "variant", f"{path}: variants.{variant}.env.{k}") for k, v in var.env.items()}
            )
        if device is not None and table is not None:
            _hardware_layer(loaded, device, table, settings, engine_env)
    else:
        name = model.repo if model.kind == "repo" else Path(model.path or "model").name
        settings["served_model_name"] = Setting(name, "default", "derived from MODEL")
    for option in OPTIONS:
        if option.name in ("model", "profile", "variant"):
            continue
        raw = read_raw(option, env, cli)
        if raw is not None:
            value, source, origin = raw
            settings[option.name] = Setting(parse_option(option, value, origin), source, origin)
    if device is not None:
        _cap_long_prefill(settings, device)
    plan = Plan(loaded, variant, model, settings, engine_env, device)
    validate(plan)
    return plan


def prefill_cap(budget: int, max_model_len: int) -> int | None:
    """vLLM's ``long_prefill_token_threshold`` that leaves part of each step's token
    budget to other requests (a short request, the sidecar's one-token probe) while
    a long prompt prefills, so that a long prefill is never mistaken for a hang;
    None when no prompt can be longer than the cap (vLLM refuses a cap above
    ``max_model_len``). vLLM lifts the cap when the long prompt is alone."""
    room = min(max(budget // 16, 128), budget // 2)
    cap = budget - room
    return cap if 0 < cap < max_model_len else None


def _cap_long_prefill(settings: dict[str, Setting], device: Device) -> None:
    if settings.get("long_prefill_token_threshold") is not None:
        return
    length = settings.get("max_model_len")
    batched = settings.get("max_num_batched_tokens")
    budget = batched.value if batched is not None else vllm_default_batching(device)[1]
    if length is None or not isinstance(length.value, int) or not isinstance(budget, int):
        return
    cap = prefill_cap(budget, length.value)
    if cap is not None:
        basis = f"{batched.origin}" if batched is not None else f"vLLM's default for {device.key}"
        settings["long_prefill_token_threshold"] = Setting(
            cap, "plan", f"step budget {budget} ({basis}) less a share for short requests and probes"
        )


def _hardware_layer(
    loaded: LoadedProfile,
    device: Device,
    table: HardwareTable,
    settings: dict[str, Setting],
    engine_env: dict[str, Setting],
) -> None:
    """The profile's override for this hardware, then what the hardware forbids."""
    prof, path = loaded.profile, loaded.path
    for key in prof.hardware_overrides:
        if key not in table.devices:
            raise ProfileInvalidError(
                str(path),
                f"hardware_overrides.{key}",
                f"'{key}' is not in the hardware table",
                f"use one of: {', '.join(sorted(table.devices))}",
            )
    need = prof.hardware.min_compute_capability
    if device.compute_capability is not None and device.compute_capability < need:
        raise HardwareUnsupportedError(str(path), device.label, device.compute_capability, need)
    override = prof.hardware_overrides.get(device.key)
    if override is not None:
        origin = f"{path}: hardware_overrides.{device.key}."
        _layer(settings, override.vllm.model_dump(exclude_none=True), "hardware", origin + "vllm.")
        engine_env.update({k: Setting(v, "hardware", f"{origin}env.{k}") for k, v in override.env.items()})
    if not device.native_fp4:
        for name in BACKEND_FIELDS:
            current = settings.get(name)
            if current is not None and current.value in table.native_fp4_backends:
                settings[name] = Setting(
                    None,
                    "hardware",
                    f"{device.key} has no native FP4: {current.value} ({current.origin}) dropped; "
                    "vLLM runs NVFP4 weight-only through its Marlin fallback",
                )


def validate(plan: Plan) -> None:
    """Checks across settings that need no checkpoint."""
    if plan.value("enable_auto_tool_choice") and not plan.value("tool_call_parser"):
        origin = plan.settings["enable_auto_tool_choice"].origin
        raise ConflictError(
            ["enable_auto_tool_choice", "tool_call_parser"],
            f"{origin}: auto tool choice is enabled but no tool_call_parser is set",
            "set vllm.tool_call_parser (e.g. hermes, qwen3_coder) or disable enable_auto_tool_choice",
        )
