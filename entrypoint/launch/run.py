"""``spark-serve launch``: the thin side-effecting end of the pipeline.

The chain (:mod:`entrypoint.inputs.gather`) has resolved, fitted and sized the
plan before the first weight byte; here: download (or find) the checkpoint →
the chain's check against the files on disk → the command → the gate (restart
back-off, memory guard; :mod:`entrypoint.launch.guard`) → record the start →
exec vLLM with an argv list, so vLLM itself receives SIGTERM from the container
runtime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..cluster.plan import HEAD, ClusterPlan, is_cluster
from ..errors import EngineNotFoundError, SparkServeError, StateUnwritableError
from ..hub.locate import locate
from ..inputs.gather import for_launch, hub_offline
from ..inputs.measured import fold_previous, installed_vllm, log_path
from ..inputs.metadata import local_meta
from ..inputs.request import download_request
from ..plan.chain import Chained, on_disk, start_key
from ..plan.checkpoint import quant_format
from ..plan.command import EngineCommand, build_command, refuse_secret_flags, shown_argv
from ..plan.memory import MemoryPlan, start_utilization
from ..plan.options import BY_NAME, option_value
from ..plan.resolve import Plan, Setting
from ..plan.restarts import (
    BackoffPolicy,
    StartRecord,
    decide_backoff,
    fingerprint,
    records,
    remember,
    start_need_bytes,
)
from ..state import (
    READY_FILE,
    STACK_FILE,
    STARTS_FILE,
    locked,
    read_document,
    share_with_group,
    start_ticks,
    write_document,
    write_state,
)
from .guard import Halted, Runtime, Stopped, back_off, gb, say, wait_for_memory, wait_for_reset
from .keeper import keep_figures

Exec = Callable[[str, list[str], dict[str, str]], Any]


def _started_at() -> float:
    """This process's start time, which exec keeps: with ``pid`` it names the
    engine process, so the sidecar never signals a reused PID."""
    import psutil

    return float(psutil.Process().create_time())


def engine_facts(plan: Plan) -> dict[str, Any]:
    """What the sidecar needs to warm up, probe and heal the engine it is about to run."""
    spec = plan.value("speculative_config")
    drafts = spec.get("num_speculative_tokens") if isinstance(spec, dict) else None
    return {
        "shutdown_timeout": plan.value("shutdown_timeout") or 0,
        "speculative_tokens": drafts if isinstance(drafts, int) else 0,
        "max_num_seqs": plan.value("max_num_seqs"),  # None: vLLM's default
    }


def base_state(plan: Plan) -> dict[str, Any]:
    return {
        "version": __version__,
        "pid": os.getpid(),
        "pid_started_at": _started_at(),
        "pid_start_ticks": start_ticks(os.getpid()),
        "started_at": time.time(),
        "profile": plan.profile.name if plan.profile else None,
        "derived_from": plan.profile.derived_from if plan.profile else None,
        "variant": plan.variant,
        "repo": plan.model.repo,
        "revision": plan.value("revision"),
        "model_path": plan.model.path,
        "served_model_name": plan.value("served_model_name"),
        "port": plan.value("port"),
        "error": None,
    }


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    command: EngineCommand
    memory: MemoryPlan | None
    found: dict[str, Any]  # what the state file records about the checkpoint


def fetch(plan: Plan, on_update: Callable[..., None]) -> Path:
    """The checkpoint directory: the local path, or the Hub snapshot, downloaded and verified."""
    request = None if plan.model.path is not None else download_request(plan, offline=hub_offline())
    return locate(plan.model.path, request, on_update)


def prepare(
    chain: Chained,
    environ: Mapping[str, str],
    on_update: Callable[..., None],
    cluster: ClusterPlan | None = None,
) -> Prepared:
    """Everything up to the gate before exec: the download, the chain's check against
    the files on disk, the command; raises typed errors."""
    model_dir = fetch(chain.plan, on_update)
    local = local_meta(model_dir)
    chain = on_disk(chain, local, str(model_dir))
    plan = chain.plan
    command = _command(plan, str(model_dir), environ, cluster)
    if shutil.which(command.argv[0], path=environ.get("PATH")) is None:
        raise EngineNotFoundError(command.argv[0])
    found: dict[str, Any] = {
        "model_path": str(model_dir),
        "quantization": quant_format(local.config, local.hf_quant),
    }
    if chain.memory is not None:
        found["memory"] = chain.memory.to_json()
    return Prepared(plan, command, chain.memory, found)


def _command(
    plan: Plan, model_dir: str, environ: Mapping[str, str], cluster: ClusterPlan | None
) -> EngineCommand:
    if cluster is None:
        return build_command(plan, model_dir, environ)
    return build_command(plan, model_dir, environ, cluster.engine_args(), cluster.env)


class StateRecorder:
    """Writes the launcher's state document as phases change."""

    def __init__(self, plan: Plan) -> None:
        self.state = base_state(plan)
        self.state_dir = plan.value("state_dir")
        share_with_group(self.state_dir)

    def update(self, phase: str, download: dict[str, Any] | None = None, **fields: Any) -> None:
        if download is not None:
            self.state["download"] = download
        self.state.update(fields)
        write_state(self.state_dir, {**self.state, "phase": phase})

    def failed(self, err: SparkServeError) -> None:
        if not isinstance(err, StateUnwritableError):
            with contextlib.suppress(StateUnwritableError):
                self.update("failed", error=str(err))


def planned_or_recorded(env: Mapping[str, str], cli: Mapping[str, Any]) -> Chained:
    """The chain for ``launch``, ``download`` and ``worker``; a failure in it (a bad
    setting, a checkpoint that does not fit) is recorded in the state file too."""
    try:
        return for_launch(env, cli)
    except SparkServeError as err:
        with contextlib.suppress(SparkServeError):
            state_dir = option_value(BY_NAME["state_dir"], env, cli)
            write_state(
                state_dir, {"version": __version__, "pid": os.getpid(), "phase": "failed", "error": str(err)}
            )
        raise


def announce_derived(plan: Plan) -> None:
    """Say, once the plan is accepted, that its profile was derived and what was not."""
    loaded = plan.profile
    if loaded is None or not loaded.derived_from:
        return
    say(
        f"no profile names {plan.model.repo or plan.model.path}: profile '{loaded.name}' derived from "
        f"{loaded.derived_from}; `spark-serve plan` shows each value and why"
    )
    for note in loaded.notes:
        say(f"note: {note}")


def download(chain: Chained) -> Path:
    """``spark-serve download``: fetch and verify the checkpoint, record state, stop."""
    plan = chain.plan
    recorder = StateRecorder(plan)
    try:
        recorder.update("pending")
        path = fetch(plan, recorder.update)
    except SparkServeError as err:
        recorder.failed(err)
        raise
    recorder.update("pending", model_path=str(path))
    announce_derived(plan)
    return path


def gate(ready: Prepared, argv_id: str, runtime: Runtime, report: Callable[..., None]) -> int | None:
    """Wait out the restart back-off and the memory guard; the bytes available then
    (None: not read). Raises Halted or Stopped."""
    plan = ready.plan
    state_dir = plan.value("state_dir")
    history = records(read_document(state_dir, STARTS_FILE))
    mark = read_document(state_dir, READY_FILE)
    ready_id = str(mark.get("start_id")) if isinstance(mark, dict) else None
    policy = BackoffPolicy(plan.value("restart_limit"), plan.value("restart_backoff_s"))
    back_off(decide_backoff(history, argv_id, ready_id, runtime.clock(), policy), runtime, report)
    if ready.memory is None:
        return None
    need = start_need_bytes(ready.memory, plan.value("gpu_memory_utilization"))
    return wait_for_memory(need, ready.memory, plan.value("memory_wait_s"), runtime, report)


def at_start(
    ready: Prepared, available: int | None, environ: Mapping[str, str], cluster: ClusterPlan | None
) -> Prepared:
    """The command with the utilization set from what is available now, where the plan
    leaves it to the start (unified memory): vLLM's start check then passes."""
    memory = ready.memory
    if memory is None or not memory.utilization_at_start or available is None:
        return ready
    util = start_utilization(available, memory.precheck_bytes, memory.device_bytes)
    why = (
        f"at start: {gb(available)} available − {gb(memory.precheck_bytes)} vLLM holds by its "
        f"start check, ÷ {gb(memory.device_bytes)}"
    )
    plan = ready.plan.with_setting("gpu_memory_utilization", Setting(util, "start", why))
    return Prepared(plan, _command(plan, ready.found["model_path"], environ, cluster), memory, ready.found)


def calibration_facts(ready: Prepared, available: int | None, vllm: str) -> dict[str, Any]:
    """What the next plan needs to measure this start by (:mod:`entrypoint.plan.measured`)."""
    memory = ready.memory
    return {
        "key": start_key(ready.plan, vllm),
        "hardware": memory.hardware if memory else None,
        "available_at_start": available,
        "planned": memory.to_json() if memory else {},
    }


def start_keeper(state_dir: str, start_id: str) -> None:
    """The log keeper (:mod:`.keeper`) for this start; the engine runs without where it cannot."""
    try:
        keep_figures(log_path(state_dir, start_id))
    except OSError as err:
        say(f"the engine's memory figures are not kept this start ({err.strerror or err})")


def record_start(state_dir: str, argv_id: str, now: float) -> str:
    record = StartRecord(uuid.uuid4().hex[:12], now, argv_id)
    with locked(state_dir, STARTS_FILE):  # `spark-serve reset` rewrites it too
        history = records(read_document(state_dir, STARTS_FILE))
        write_document(state_dir, STARTS_FILE, remember(history, record))
    return record.id


def head_cluster(plan: Plan, environ: Mapping[str, str]) -> ClusterPlan | None:
    """This host as a cluster's head (interfaces read now, before any download), or None
    on one node, whose start forgets a previous cluster's membership."""
    from ..cluster.node import clear, host_cluster

    if not is_cluster(plan):
        clear(plan.value("state_dir"))
        return None
    return host_cluster(plan, HEAD, environ)


def form_cluster(
    ready: Prepared, cluster: ClusterPlan, environ: Mapping[str, str], recorder: StateRecorder
) -> tuple[str, ...]:
    """Start the Ray head and wait until every worker joined with this checkpoint; the
    addresses of the nodes that joined."""
    from ..cluster.members import checkpoint_labels
    from ..cluster.node import start_head, stop_ray

    labels = checkpoint_labels(HEAD, Path(ready.found["model_path"]), ready.plan.model.repo)
    start_head(cluster, labels, environ)
    try:
        return _wait_workers(ready, cluster, recorder)
    except BaseException:
        stop_ray(environ)  # nothing left half-started
        raise


def _wait_workers(ready: Prepared, cluster: ClusterPlan, recorder: StateRecorder) -> tuple[str, ...]:
    from ..cluster.node import head_wait

    workers = cluster.nodes - 1
    say(f"Ray head at {cluster.address} ({cluster.interface}); waiting for {workers} worker(s) to join")
    recorder.update(
        "waiting-for-workers",
        waiting={"reason": f"{workers} worker(s) to join the Ray head at {cluster.address}"},
    )

    def joined(members: Any) -> None:
        say(
            f"cluster: {members.joined} of {members.expected} nodes in: "
            + ", ".join(n.ip for n in members.nodes)
        )

    members = head_wait(
        cluster, ready.plan.value("state_dir"), ready.plan.value("cluster_join_timeout_s"), joined
    )
    return tuple(n.ip for n in members.nodes if n.alive)


def launch(
    chain: Chained,
    environ: Mapping[str, str],
    execvpe: Exec = os.execvpe,
    runtime: Runtime | None = None,
) -> NoReturn:
    """The side effects of the planned chain: download, check, gate, record, exec."""
    plan = chain.plan
    runtime = runtime or Runtime()
    fold_previous(plan.value("state_dir"), chain.calibration)  # before the previous start's state goes
    with contextlib.suppress(OSError):  # one model now: the sidecar no longer watches a set
        (Path(plan.value("state_dir")) / STACK_FILE).unlink()
    recorder = StateRecorder(plan)
    try:
        recorder.update("pending")
        refuse_secret_flags(plan)  # before anything is fetched or started
        cluster = head_cluster(plan, environ)
        ready = prepare(chain, environ, recorder.update, cluster)
        argv = shown_argv(ready.command.argv)
        argv_id = fingerprint(argv)
        state_dir = ready.plan.value("state_dir")
        members: tuple[str, ...] = ()
        if cluster is not None:
            members = form_cluster(ready, cluster, environ, recorder)
        with runtime.signals():
            while True:
                try:
                    available = gate(ready, argv_id, runtime, recorder.update)
                    break
                except Halted as halt:
                    wait_for_reset(halt, state_dir, runtime, recorder.update)
        ready = at_start(ready, available, environ, cluster)
        argv = shown_argv(ready.command.argv)
        start_id = record_start(state_dir, argv_id, runtime.clock())
    except Stopped:
        with contextlib.suppress(StateUnwritableError):
            recorder.update("failed", error="stopped by a signal before the engine started")
        say("stopped before the engine started")
        raise SystemExit(0) from None
    except SparkServeError as err:
        recorder.failed(err)
        raise
    recorder.update(
        "starting",
        argv=argv,
        start_id=start_id,
        waiting=None,
        error=None,
        calibration=calibration_facts(
            ready, available, chain.calibration.vllm if chain.calibration else installed_vllm()
        ),
        **ready.found,
        **engine_facts(ready.plan),
    )
    announce_derived(ready.plan)
    say(f"exec {' '.join(argv)}")
    command = ready.command
    if cluster is not None:
        from ..cluster.node import spawn_watcher

        spawn_watcher(cluster, state_dir, environ, members)
    if execvpe is os.execvpe:  # a test's stand-in exec keeps the test's own output
        start_keeper(state_dir, start_id)
    try:
        execvpe(command.argv[0], command.argv, command.env(environ))
    except OSError as err:
        failure = EngineNotFoundError(command.argv[0])
        recorder.failed(failure)
        raise failure from err
    raise SystemExit(0)  # only reached when execvpe is replaced in tests
