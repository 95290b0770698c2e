"""``spark-serve launch``: the thin side-effecting end of the pipeline.

Resolve → locate the checkpoint → inspect and fit → write state → exec vLLM
with an argv list, so vLLM itself receives SIGTERM from the container runtime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from . import __version__
from .checkpoint import inspect_checkpoint
from .command import EngineCommand, build_command
from .errors import EngineNotFoundError, SparkServeError, StateUnwritableError
from .fit import fit_checkpoint
from .locate import locate
from .resolve import Plan
from .state import write_state

_SECRET_FLAGS = ("--api-key", "--hf-token")
Exec = Callable[[str, list[str], dict[str, str]], Any]


def shown_argv(argv: list[str]) -> list[str]:
    """argv with the values of secret-bearing flags redacted (for logs and state)."""
    shown: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            shown.append("<redacted>")
            hide_next = False
        elif word in _SECRET_FLAGS:
            shown.append(word)
            hide_next = True
        elif word.startswith(tuple(f + "=" for f in _SECRET_FLAGS)):
            shown.append(word.split("=", 1)[0] + "=<redacted>")
        else:
            shown.append(word)
    return shown


def base_state(plan: Plan) -> dict[str, Any]:
    return {
        "version": __version__,
        "pid": os.getpid(),
        "started_at": time.time(),
        "profile": plan.profile.name if plan.profile else None,
        "variant": plan.variant,
        "repo": plan.model.repo,
        "revision": plan.value("revision"),
        "model_path": plan.model.path,
        "served_model_name": plan.value("served_model_name"),
        "port": plan.value("port"),
        "error": None,
    }


def prepare(plan: Plan, environ: Mapping[str, str]) -> tuple[EngineCommand, dict[str, Any]]:
    """Everything up to (not including) exec; raises typed errors.

    Returns the command and what the state file records about the checkpoint.
    """
    model_dir = locate(plan)
    info = inspect_checkpoint(model_dir)
    plan = fit_checkpoint(plan, info)
    command = build_command(plan, str(model_dir), environ)
    if shutil.which(command.argv[0], path=environ.get("PATH")) is None:
        raise EngineNotFoundError(command.argv[0])
    return command, {"model_path": str(model_dir), "quantization": info.quant_format}


def launch(plan: Plan, environ: Mapping[str, str], execvpe: Exec = os.execvpe) -> NoReturn:
    state = base_state(plan)
    state_dir = plan.value("state_dir")
    try:
        command, found = prepare(plan, environ)
    except SparkServeError as err:
        if not isinstance(err, StateUnwritableError):
            with contextlib.suppress(StateUnwritableError):
                write_state(state_dir, {**state, "phase": "failed", "error": str(err)})
        raise
    argv = shown_argv(command.argv)
    write_state(state_dir, {**state, **found, "phase": "starting", "argv": argv})
    print(f"spark-serve: exec {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        execvpe(command.argv[0], command.argv, command.env(environ))
    except OSError as err:
        failure = EngineNotFoundError(command.argv[0])
        write_state(state_dir, {**state, "phase": "failed", "error": str(failure)})
        raise failure from err
    raise SystemExit(0)  # only reached when execvpe is replaced in tests
