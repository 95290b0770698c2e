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
from ..inputs.metadata import local_meta
from ..plan.chain import Chained, on_disk
from .guard import say
from .run import StateRecorder, fetch


def worker(chain: Chained, environ: Mapping[str, str], execvpe: Exec = os.execvpe) -> NoReturn:
    plan = chain.plan
    recorder = StateRecorder(plan)
    try:
        recorder.update("pending")
        cluster = host_cluster(plan, WORKER, environ)
        model_dir = fetch(plan, recorder.update)
        on_disk(chain, local_meta(model_dir), str(model_dir))  # the head's check, here too
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
