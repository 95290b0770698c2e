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
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .errors import EngineNotFoundError, SparkServeError, StateUnwritableError
from .locate import locate
from .plan.checkpoint import inspect_checkpoint
from .plan.command import EngineCommand, build_command, shown_argv
from .plan.fit import fit_checkpoint
from .plan.resolve import Plan
from .state import write_state

Exec = Callable[[str, list[str], dict[str, str]], Any]


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


def prepare(
    plan: Plan, environ: Mapping[str, str], on_update: Callable[..., None]
) -> tuple[EngineCommand, dict[str, Any]]:
    """Everything up to (not including) exec; raises typed errors.

    Returns the command and what the state file records about the checkpoint.
    """
    model_dir = locate(plan, on_update)
    info = inspect_checkpoint(model_dir)
    plan = fit_checkpoint(plan, info)
    command = build_command(plan, str(model_dir), environ)
    if shutil.which(command.argv[0], path=environ.get("PATH")) is None:
        raise EngineNotFoundError(command.argv[0])
    return command, {"model_path": str(model_dir), "quantization": info.quant_format}


class StateRecorder:
    """Writes the launcher's state document as phases change."""

    def __init__(self, plan: Plan) -> None:
        self.state = base_state(plan)
        self.state_dir = plan.value("state_dir")

    def update(self, phase: str, download: dict[str, Any] | None = None, **fields: Any) -> None:
        if download is not None:
            self.state["download"] = download
        self.state.update(fields)
        write_state(self.state_dir, {**self.state, "phase": phase})

    def failed(self, err: SparkServeError) -> None:
        if not isinstance(err, StateUnwritableError):
            with contextlib.suppress(StateUnwritableError):
                self.update("failed", error=str(err))


def download(plan: Plan) -> Path:
    """``spark-serve download``: fetch and verify the checkpoint, record state, stop."""
    recorder = StateRecorder(plan)
    try:
        recorder.update("pending")
        path = locate(plan, recorder.update)
    except SparkServeError as err:
        recorder.failed(err)
        raise
    recorder.update("pending", model_path=str(path))
    return path


def launch(plan: Plan, environ: Mapping[str, str], execvpe: Exec = os.execvpe) -> NoReturn:
    recorder = StateRecorder(plan)
    try:
        recorder.update("pending")
        command, found = prepare(plan, environ, recorder.update)
    except SparkServeError as err:
        recorder.failed(err)
        raise
    argv = shown_argv(command.argv)
    recorder.update("starting", argv=argv, **found)
    print(f"spark-serve: exec {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        execvpe(command.argv[0], command.argv, command.env(environ))
    except OSError as err:
        failure = EngineNotFoundError(command.argv[0])
        recorder.failed(failure)
        raise failure from err
    raise SystemExit(0)  # only reached when execvpe is replaced in tests
