"""``spark-serve check``: every profile × variant through the installed vLLM.

Builds each argv exactly as ``launch`` would and runs it through vLLM's own
serve argument parser and validation, then checks parser names against
vLLM's registries and ``VLLM_*`` variables against vLLM's known variables.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SparkServeError
from ..plan.command import build_command
from ..plan.families import FamilyTable
from ..plan.profile import Catalog
from ..plan.resolve import Plan, resolve

_PARSER_MODULES = ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args")
_ARGPARSE_MODULES = ("vllm.utils.argparse_utils", "vllm.utils")


@dataclass(frozen=True)
class VllmSurface:
    """What check needs from the installed vLLM, found by name across releases."""

    make_parser: Callable[[], Any]
    validate: Callable[[Any], None]
    tool_parsers: frozenset[str]
    reasoning_parsers: frozenset[str]
    env_vars: frozenset[str]
    version: str


def _first(modules: tuple[str, ...], attr: str) -> Any:
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
    raise ImportError(f"none of {', '.join(modules)} provides {attr}")


def load_vllm_surface() -> VllmSurface:
    import vllm
    import vllm.envs as envs
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    make_arg_parser = _first(_PARSER_MODULES, "make_arg_parser")
    validate = _first(_PARSER_MODULES, "validate_parsed_serve_args")
    flexible = _first(_ARGPARSE_MODULES, "FlexibleArgumentParser")
    return VllmSurface(
        make_parser=lambda: make_arg_parser(flexible(prog="vllm serve")),
        validate=validate,
        tool_parsers=frozenset(ToolParserManager.list_registered()),
        reasoning_parsers=frozenset(ReasoningParserManager.list_registered()),
        env_vars=frozenset(envs.environment_variables),
        version=str(vllm.__version__),
    )


def check_plan(plan: Plan, surface: VllmSurface) -> list[str]:
    """Problems with one plan's command under the installed vLLM."""
    problems: list[str] = []
    model = plan.model.repo or plan.model.path or "model"
    command = build_command(plan, model, {})
    prefix = len(plan.value("engine_command"))
    args = [model, *command.argv[prefix:]]
    parser = surface.make_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = parser.parse_args(args)
    except SystemExit:
        lines = [ln for ln in stderr.getvalue().splitlines() if ln.strip()]
        return [f"vLLM's parser rejects the arguments: {lines[-1] if lines else 'unknown error'}"]
    try:
        surface.validate(parsed)
    except (TypeError, ValueError) as err:
        problems.append(f"vLLM's serve validation: {err}")
    tool = plan.value("tool_call_parser")
    if tool and tool not in surface.tool_parsers:
        problems.append(f"tool_call_parser '{tool}' is not registered in vLLM {surface.version}")
    reasoning = plan.value("reasoning_parser")
    if reasoning and reasoning not in surface.reasoning_parsers:
        problems.append(f"reasoning_parser '{reasoning}' is not registered in vLLM {surface.version}")
    for name, setting in command.env_set.items():
        if name.startswith("VLLM_") and name not in surface.env_vars:
            problems.append(f"{setting.origin}: {name} is not a variable vLLM {surface.version} reads")
    return problems


def check_families(table: FamilyTable, surface: VllmSurface) -> list[str]:
    """Every parser the families table names must be registered in the installed vLLM."""
    registered = {"tool": surface.tool_parsers, "reasoning": surface.reasoning_parsers}
    return [
        f"{where}: {kind} parser '{name}' is not registered in vLLM {surface.version}"
        for where, kind, name in table.parser_names()
        if name not in registered[kind]
    ]


def run_check(
    catalog: Catalog, surface: VllmSurface, families: FamilyTable | None = None
) -> list[tuple[str, list[str]]]:
    """Check the families table, then every profile × variant: (label, problems) per row."""
    results: list[tuple[str, list[str]]] = []
    if families is not None:
        results.append(("families table (configs/families.yaml)", check_families(families, surface)))
    for name in catalog.names():
        try:
            loaded = catalog.get(name)
        except SparkServeError as err:
            results.append((name, [str(err)]))
            continue
        for variant in [None, *loaded.profile.variants]:
            label = name + (f" [{variant}]" if variant else "")
            try:
                plan = resolve(catalog, {}, {"profile": name, "variant": variant})
            except SparkServeError as err:
                results.append((label, [str(err)]))
                continue
            results.append((label, check_plan(plan, surface)))
    return results
