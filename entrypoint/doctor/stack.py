"""``spark-serve doctor`` with ``MODELS``: the set's joint plan, then each model's own
plan-dependent lines (named ``<model>: <line>``), then what the host shares once.

Each model is checked as ``MODEL`` would be (its environment from the set: its port,
state folder and settings), with the chain the set was planned by. The router's
exposure is judged on PORT, where clients reach it: beyond loopback its worker routes
(``/workers``) answer whoever reaches the port, with or without ``API_KEY``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import SparkServeError
from ..inputs.stack import Stack, plan_stack
from ..plan.chain import Chained
from ..plan.hardware import GIB
from ..plan.options import BY_NAME, option_value
from .gather import Exposure, Facts, gather
from .judge import Line, judge

PER_MODEL = ("profile", "plan", "memory", "calibration", "disk", "hub", "launcher", "heal")
SHARED = ("gpu", "hardware", "vllm", "flashinfer-python", "torch", "cache")


def joint_lines(stack: Stack) -> list[Line]:
    joint = stack.joint
    if joint is None:
        missing = [e.name for e in stack.engines if e.chained.memory is None]
        why = f"not planned together: no checkpoint metadata for {', '.join(missing)}"
        return [
            Line("models", "warn", why, "run `spark-serve plan` with the Hub reachable, or download first")
        ]
    if not joint.fits:
        return [Line("models", "fail",
                     f"{len(stack.engines)} models need {joint.needed_bytes / GIB:.2f} GiB of a "
                     f"{joint.budget_bytes / GIB:.2f} GiB budget: " + "; ".join(joint.lines),
                     "try " + ", or ".join(joint.ideas))]  # fmt: skip
    planned = sum(m.weights_bytes + m.allowance_bytes + m.kv_cache_bytes for _, m in joint.members)
    names = ", ".join(n for n, _ in joint.members)
    return [Line("models", "ok",
                 f"{len(stack.engines)} models planned together: {planned / GIB:.2f} GiB of a "
                 f"{joint.budget_bytes / GIB:.2f} GiB budget ({names})")]  # fmt: skip


def router_exposure(env: Mapping[str, str], keyed: bool) -> Line:
    host = str(option_value(BY_NAME["host"], env, {}))
    variable, address = ("API_BIND", env["API_BIND"]) if env.get("API_BIND") else ("HOST", host)
    where = f"the router listens on {address or 'every interface'} ({variable})"
    if Exposure(variable, address, keyed).loopback:
        return Line("exposure", "ok", f"{where}: this machine only")
    return Line(
        "exposure",
        "warn",
        f"{where}: its worker routes (/workers) answer whoever reaches it"
        + ("" if keyed else ", and with no API_KEY anyone can generate"),
        "keep the router on loopback (API_BIND=127.0.0.1) behind a gateway that lets only /v1/ through",
    )


def doctor_stack(
    env: Mapping[str, str],
    cli: Mapping[str, Any],
    planned: Callable[..., Chained],
    gatherer: Callable[..., Facts] = gather,
) -> tuple[list[Line], Stack | None]:
    offline = env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        stack = plan_stack(env, cli, lambda e, c: planned(e, c, network=not offline), refuse=False)
    except SparkServeError as err:
        return [Line("models", "fail", err.message, err.fix or "")], None
    lines = joint_lines(stack)
    shared: list[Line] = []
    for i, engine in enumerate(stack.engines):
        facts = gatherer(engine.env, {}, lambda *_, chained=engine.chained, **__: chained)
        for line in judge(facts):
            if line.name in PER_MODEL:
                lines.append(replace(line, name=f"{engine.name}: {line.name}"))
            elif i == 0 and line.name in SHARED:
                shared.append(line)
    keyed = bool(stack.engines and stack.engines[0].chained.plan.value("api_key"))
    return shared + lines + [router_exposure(env, keyed)], stack
