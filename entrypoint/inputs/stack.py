"""``MODELS``: read the set (a list or a stack file), plan each model by the one chain,
then plan them together (:mod:`entrypoint.plan.joint`), all before any weight byte.

Each model is planned as ``MODEL`` would be, with an environment of its own: the
user's, less what names one model, plus its name, variant, settings, an engine port
(``ENGINE_PORT`` + its place, on HOST, not published) and a state folder of its own
(``STATE_DIR/models/<slug>``), so restarts, heals and calibration are per engine.
The router takes PORT, and its metrics ``ENGINE_PORT`` + 8 on 127.0.0.1 (:func:`listeners`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConflictError, SettingError, StackInvalidError, StackTooSmallError
from ..plan.chain import Chained
from ..plan.joint import JointPlan, Member, plan_joint
from ..plan.options import BY_NAME, OPTIONS, option_value, read_raw
from ..plan.sizing import apply_memory
from ..plan.stack import MAX_MODELS, Entry, from_file, from_list
from ..plan.tables import load_yaml
from ..shipped import configs

# What names one model, or is the engine's own: never taken from the user's environment
# for a member, and never a member's setting.
_PER_ENGINE = ("model", "models", "profile", "variant", "port", "host", "state_dir", "kv_cache_memory_bytes")
_SETTABLE = {o.name: o for o in OPTIONS if o.env and o.name not in _PER_ENGINE and not o.secret}
MODELS_DIR = "models"


@dataclass(frozen=True)
class Engine:
    """One member of the set: its entry, its environment and its chain."""

    entry: Entry
    env: dict[str, str]
    chained: Chained

    @property
    def name(self) -> str:
        return str(self.chained.plan.value("served_model_name"))

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    @property
    def state_dir(self) -> str:
        return self.env["STATE_DIR"]


@dataclass(frozen=True)
class Stack:
    engines: tuple[Engine, ...]
    joint: JointPlan | None  # None: some member could not be sized (no metadata)
    where: str  # MODELS or the stack file


@dataclass(frozen=True)
class Listener:
    """A port the set listens on: what, the variable that places it, where."""

    what: str
    variable: str
    host: str
    port: int


def metrics_port(env: Mapping[str, str]) -> int:
    """The router's Prometheus port: after every engine's (127.0.0.1, never published)."""
    return int(option_value(BY_NAME["engine_port"], env, {})) + MAX_MODELS


def listeners(stack: Stack, env: Mapping[str, str]) -> list[Listener]:
    host = str(option_value(BY_NAME["host"], env, {}))
    port = int(option_value(BY_NAME["port"], env, {}))
    return [
        Listener("the router", "PORT", host, port),
        *(Listener(f"engine {e.name}", "ENGINE_PORT", e.env["HOST"], e.port) for e in stack.engines),
        Listener("the router's metrics", "ENGINE_PORT", "127.0.0.1", metrics_port(env)),
    ]


def check_ports(env: Mapping[str, str]) -> None:
    """ENGINE_PORT to ENGINE_PORT + 8 (the engines, then the router's metrics) must fit
    under 65536 and leave out PORT."""
    base = int(option_value(BY_NAME["engine_port"], env, {}))
    port = int(option_value(BY_NAME["port"], env, {}))
    last = base + MAX_MODELS
    if last > 65535:
        raise SettingError(
            f"ENGINE_PORT={base}",
            f"the engines and the router's metrics take ENGINE_PORT to ENGINE_PORT+{MAX_MODELS}, past 65535",
            f"set ENGINE_PORT to {65535 - MAX_MODELS} or less",
        )
    if base <= port <= last:
        raise ConflictError(
            ["PORT", "ENGINE_PORT"],
            f"PORT {port} is inside ENGINE_PORT {base} to {last} (the engines, then the router's metrics)",
            f"set ENGINE_PORT to {port + 1} or more"
            + (f", or to {port - MAX_MODELS - 1} or less" if port > MAX_MODELS + 1 else ""),
        )


def stacks_dir() -> Path:
    return configs("stacks")


def read_entries(value: str, profiles: set[str], origin: str) -> tuple[tuple[Entry, ...], str]:
    """The entries of ``MODELS`` and where they came from (the variable or the file)."""
    text = value.strip()
    named = stacks_dir() / f"{text}.yaml"
    path = Path(text).expanduser() if text.endswith((".yaml", ".yml")) else named
    if "," not in text and (path.is_file() or text.endswith((".yaml", ".yml"))):
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise StackInvalidError(
                str(path), f"cannot read it: {err.strerror}", "name a stack file that exists"
            ) from None
        except Exception as err:  # yaml.YAMLError and friends: one line, no traceback
            raise StackInvalidError(str(path), f"invalid YAML: {err}", "fix the file's syntax") from None
        return from_file(data, profiles, str(path)), str(path)
    return from_list(text, profiles, origin), origin


def member_env(env: Mapping[str, str], entry: Entry, place: int, where: str) -> dict[str, str]:
    own = {BY_NAME[n].env for n in _PER_ENGINE if BY_NAME[n].env}
    out = {k: v for k, v in env.items() if k not in own}
    for name, value in entry.settings.items():
        option = _SETTABLE.get(name)
        if option is None or option.env is None:
            raise StackInvalidError(
                f"{where}: {entry.model}: settings.{name}",
                "is no setting a model of the set can have",
                f"use one of {', '.join(sorted(_SETTABLE))}",
            )
        out[option.env] = value if isinstance(value, str) else _text(value)
    base = option_value(BY_NAME["engine_port"], env, {})
    state = option_value(BY_NAME["state_dir"], env, {})
    out.update(
        MODEL=entry.model,
        PORT=str(base + place),
        HOST=str(option_value(BY_NAME["host"], env, {})),  # as the router's: loopback unless opened
        STATE_DIR=str(Path(state) / MODELS_DIR / entry.slug),
    )
    if entry.variant:
        out["VARIANT"] = entry.variant
    return out


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else (
        json.dumps(value) if isinstance(value, dict | list) else str(value)
    )  # fmt: skip


def models_raw(env: Mapping[str, str], cli: Mapping[str, Any]) -> tuple[str, str, str] | None:
    raw = read_raw(BY_NAME["models"], env, cli)
    if raw is None:
        return None
    for other in ("model", "profile", "variant"):
        if read_raw(BY_NAME[other], env, cli) is not None:
            flag = BY_NAME[other].env
            raise ConflictError(
                ["MODELS", str(flag)],
                f"{raw[2]} and {flag} are both set",
                f"name every model in MODELS (PROFILE:VARIANT for a variant), or unset MODELS to serve "
                f"{flag}",
            )
    return raw


def plan_stack(env: Mapping[str, str], cli: Mapping[str, Any], chain: Any, *, refuse: bool) -> Stack:
    """Each member through ``chain`` (``planned`` or ``for_launch`` with its environment),
    then the joint plan; with ``refuse`` a set that does not fit is the typed error."""
    from .gather import catalog_for, hardware_for

    raw = models_raw(env, cli)
    assert raw is not None
    check_ports(env)
    bare_cli = {k: v for k, v in cli.items() if k not in _PER_ENGINE}
    catalog = catalog_for(env, bare_cli)
    entries, where = read_entries(raw[0], set(catalog.names()), raw[2])
    device, _ = hardware_for(env, bare_cli)
    if device.memory == "dedicated" and len(entries) > 1:
        raise StackInvalidError(
            where,
            f"several engines on one dedicated GPU ({device.key}) are not planned: vLLM sizes each by its "
            "share of free GPU memory",
            "serve one model per GPU (MODEL), or use unified memory (DGX Spark)",
        )
    if int(option_value(BY_NAME["cluster_nodes"], env, bare_cli) or 1) > 1:
        raise StackInvalidError(
            where,
            "several models are served on one Spark; CLUSTER_NODES spreads one model over several",
            "unset CLUSTER_NODES to serve the set, or serve one model (MODEL) on the cluster",
        )
    engines = []
    for place, entry in enumerate(entries):
        member = member_env(env, entry, place, where)
        engines.append(Engine(entry, member, chain(member, bare_cli)))
    _distinct(engines, where)
    if any(e.chained.memory is None or e.chained.inputs is None for e in engines):
        return Stack(tuple(engines), None, where)
    members = [
        Member(e.name, e.chained.inputs, e.chained.memory, e.entry.kv_share, e.entry.min_seqs)  # type: ignore[arg-type]
        for e in engines
    ]
    joint = plan_joint(device, members)
    if refuse and not joint.fits:
        raise StackTooSmallError(joint.needed_bytes, joint.budget_bytes, joint.budget_basis,
                                 list(joint.lines), list(joint.ideas))  # fmt: skip
    if joint.fits:
        engines = [
            Engine(e.entry, e.env, _with_memory(e.chained, memory))
            for e, (_, memory) in zip(engines, joint.members, strict=True)
        ]
    return Stack(tuple(engines), joint, where)


def _with_memory(chained: Chained, memory: Any) -> Chained:
    return replace(chained, plan=apply_memory(chained.plan, memory), memory=memory)


def _distinct(engines: list[Engine], where: str) -> None:
    seen: dict[str, str] = {}
    for engine in engines:
        if engine.name in seen:
            raise StackInvalidError(
                where,
                f"{seen[engine.name]} and {engine.entry.model} are both served as '{engine.name}'",
                "give one of them another served_model_name in its settings",
            )
        seen[engine.name] = engine.entry.model
