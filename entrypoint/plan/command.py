"""Plan → the exact engine argv and environment (pure)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import SecretExposedError
from .options import OPTIONS, SECRET_ENV
from .redact import REDACTED, replaced_by_variable, shown_argv
from .resolve import ENGINE_FIELDS, Plan, Setting

__all__ = ["REDACTED", "EngineCommand", "build_command", "engine_flags", "shown_argv"]
# The ASGI middleware (entrypoint/engine/keyguard.py) that puts the key on every route.
KEY_MIDDLEWARE = "entrypoint.engine.keyguard.KeyGuard"
FAULTHANDLER_WHY = (
    "every engine process writes all its threads' Python stacks to the log when the sidecar "
    "ends a hung engine (SIGABRT)"
)


@dataclass(frozen=True)
class EngineCommand:
    argv: list[str]
    env_set: dict[str, Setting]  # what spark-serve adds to the inherited environment
    env_unset: tuple[str, ...]  # empty variables removed before exec

    def shell(self) -> str:
        return shlex.join(self.argv)

    def env(self, inherited: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in inherited.items() if k not in self.env_unset}
        env.update({k: str(s.value) for k, s in self.env_set.items()})
        return env

    def shown_env(self) -> dict[str, str]:
        return {k: REDACTED if k in SECRET_ENV else str(s.value) for k, s in self.env_set.items()}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def engine_flags(plan: Plan) -> list[str]:
    """vLLM flags for the plan's engine options, in a stable order."""
    args: list[str] = []
    for name in ENGINE_FIELDS:
        value: Any = plan.value(name)
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(_flag(name) if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, dict):
            args += [_flag(name), json.dumps(value, separators=(",", ":"), sort_keys=True)]
        else:
            args += [_flag(name), str(value)]
    return args


_EXTRA_ARGS = (("vllm_extra_args", "VLLM_EXTRA_ARGS"), ("extra_args", "the profile's extra_args"))
Found = TypeVar("Found")


def in_extra_args(plan: Plan, find: Callable[[Sequence[str]], Found | None]) -> tuple[str, Found] | None:
    """The first of the plan's extra argument lists in which ``find`` finds something: its
    name as the user knows it (VLLM_EXTRA_ARGS or the profile's extra_args), and what."""
    for name, where in _EXTRA_ARGS:
        found = find(plan.value(name) or [])
        if found is not None:
            return where, found
    return None


def refuse_secret_flags(plan: Plan) -> None:
    """``--api-key`` or ``--hf-token`` in the extra arguments: a key on a command line is
    readable by every user of the host (``ps``), and vLLM's ``--api-key`` guards only /v1."""
    hit = in_extra_args(plan, replaced_by_variable)
    if hit is None:
        return
    where, (flag, variable) = hit
    guards = ", and guards every route" if variable == "API_KEY" else ""
    raise SecretExposedError(
        where,
        flag,
        "a secret on the engine's command line, which every user of the host can read",
        f"remove {flag} and set {variable} (or {variable}_FILE): it reaches vLLM through the "
        f"environment, never a command line{guards}",
    )


def build_command(
    plan: Plan,
    model: str,
    inherited: Mapping[str, str],
    cluster_args: Sequence[str] = (),
    cluster_env: Mapping[str, Setting] | None = None,
) -> EngineCommand:
    """The engine command for ``model`` (a local path or a Hub repo id); ``cluster_args``
    and ``cluster_env`` spread it over a Ray cluster (before the extra arguments, which win)."""
    refuse_secret_flags(plan)
    argv = [model if word == "{model}" else word for word in plan.value("engine_command")]
    argv += ["--served-model-name", plan.value("served_model_name")]
    argv += ["--host", str(plan.value("host")), "--port", str(plan.value("port"))]
    if plan.model.path is None and model == plan.model.repo:
        argv += ["--revision", plan.value("revision")]
    argv += engine_flags(plan)
    if plan.value("api_key"):
        # vLLM's own check leaves /invocations and more open: the key on every route.
        argv += ["--middleware", KEY_MIDDLEWARE]
    argv += cluster_args
    argv += plan.value("extra_args") or []
    argv += plan.value("vllm_extra_args") or []
    env_set = {**plan.engine_env, **(cluster_env or {})}
    if "PYTHONFAULTHANDLER" not in inherited and "PYTHONFAULTHANDLER" not in env_set:
        env_set["PYTHONFAULTHANDLER"] = Setting("1", "default", FAULTHANDLER_WHY)
    if plan.value("api_key"):
        env_set["VLLM_API_KEY"] = Setting(plan.value("api_key"), plan.settings["api_key"].source, "API_KEY")
    own = {o.env for o in OPTIONS if o.env}
    unset = tuple(sorted(k for k, v in inherited.items() if v == "" and (k in own or k in SECRET_ENV)))
    return EngineCommand(argv, env_set, unset)
