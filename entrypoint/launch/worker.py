"""``spark-serve worker``: a Spark that lends its GPU to a head's engine.

Find the fabric interface (before any download), download and verify the same
checkpoint into this node's cache, then become ``ray start --block`` with the
checkpoint's labels, so the head sees this node only once its files are
complete and can compare them with its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

from ..cluster.members import checkpoint_labels
from ..cluster.node import Exec, clear, exec_worker, host_cluster
from ..cluster.plan import WORKER
from ..errors import SparkServeError
from ..hub.locate import locate
from ..inputs.metadata import CheckpointMeta
from ..plan.resolve import Plan
from .guard import say
from .run import StateRecorder, size_before_download


def worker(
    plan: Plan, environ: Mapping[str, str], execvpe: Exec = os.execvpe, *, meta: CheckpointMeta | None = None
) -> NoReturn:
    recorder = StateRecorder(plan)
    try:
        recorder.update("pending")
        cluster = host_cluster(plan, WORKER, environ)
        sized, _ = size_before_download(plan, meta)
        model_dir = locate(sized, recorder.update)
        labels = checkpoint_labels(WORKER, model_dir, plan.model.repo)
        clear(plan.value("state_dir"))
        recorder.update("starting", model_path=str(model_dir), argv=cluster.ray_start_argv(labels))
    except SparkServeError as err:
        recorder.failed(err)
        raise
    say(
        f"checkpoint verified ({labels['spark-serve-revision']}); joining the Ray head at {cluster.address} "
        f"from {cluster.node_ip} ({cluster.interface})"
    )
    exec_worker(cluster, labels, environ, execvpe)
