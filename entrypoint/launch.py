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
from .hub.metadata import local_meta
from .locate import locate
from .plan.checkpoint import inspect_checkpoint
from .plan.command import EngineCommand, build_command, shown_argv
from .plan.fit import fit_checkpoint
from .plan.memory import MemoryPlan
from .plan.resolve import Plan
from .plan.sizing import apply_memory
from .planning import checkpoint_meta, info_from, memory_for
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


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def size_before_download(plan: Plan) -> tuple[Plan, MemoryPlan | None]:
    """Fit and size the plan from the checkpoint's metadata alone, refusing
    before the first weight byte when the model does not fit the device."""
    device = plan.device
    if device is None:
        return plan, None
    meta = checkpoint_meta(plan, offline=_offline(), retries=5)
    if meta is None:  # offline and never planned: sized after locating the snapshot
        return plan, None
    plan = fit_checkpoint(plan, info_from(meta, plan), weights_required=False)
    return plan, memory_for(plan, device, meta, refuse=True)


def prepare(
    plan: Plan, environ: Mapping[str, str], on_update: Callable[..., None]
) -> tuple[EngineCommand, dict[str, Any]]:
    """Everything up to (not including) exec; raises typed errors.

    Returns the command and what the state file records about the checkpoint.
    """
    plan, memory = size_before_download(plan)
    model_dir = locate(plan, on_update)
    info = inspect_checkpoint(model_dir)
    plan = fit_checkpoint(plan, info)
    device = plan.device
    if memory is None and device is not None:
        memory = memory_for(plan, device, local_meta(model_dir), refuse=True)
    if memory is not None:
        plan = apply_memory(plan, memory)
    command = build_command(plan, str(model_dir), environ)
    if shutil.which(command.argv[0], path=environ.get("PATH")) is None:
        raise EngineNotFoundError(command.argv[0])
    found: dict[str, Any] = {"model_path": str(model_dir), "quantization": info.quant_format}
    if memory is not None:
        found["memory"] = memory.to_json()
    return command, found


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
        plan, _ = size_before_download(plan)
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
