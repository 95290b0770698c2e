"""The head's membership watcher, a process beside vLLM.

``spark-serve launch`` starts it just before it execs vLLM (whose PID is then
this process's parent). Every few seconds it reads Ray's node table, writes the
membership to ``cluster.json`` for the sidecar, and when a worker is lost it
ends the engine with SIGTERM, so the head exits and its restart policy starts
it again (waiting for the workers first). It ends with its parent.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from ..errors import SparkServeError
from ..state import CLUSTER_FILE, write_document
from .members import Membership, Node


def lost_reason(members: Membership, formed: Sequence[str] = ()) -> str | None:
    """Why the cluster is no longer whole, or None. With ``formed`` (the nodes that formed
    it), only one of those counts: a node that joins later and leaves again serves nothing."""
    if formed:
        alive = {n.ip for n in members.nodes if n.alive}
        gone = [ip for ip in formed if ip not in alive]
        return ("worker " + ", ".join(gone) + " lost") if gone else None
    if members.lost:
        return "worker " + ", ".join(n.ip for n in members.lost) + " lost"
    if members.joined < members.expected:
        return f"{members.expected - members.joined} of {members.expected} nodes gone from Ray"
    return None


def watch(
    read: Callable[[], list[Node]],
    expected: int,
    state_dir: str,
    engine_alive: Callable[[], bool],
    end_engine: Callable[[], None],
    stopped: Callable[[], bool],
    every_s: float = 3.0,
    sleep: Callable[[float], None] = time.sleep,
    formed: Sequence[str] = (),
) -> str | None:
    """Watch until the engine or this process is asked to stop; the reason the engine was ended."""
    while engine_alive() and not stopped():
        try:
            members = Membership(expected, tuple(read()))
        except (SparkServeError, OSError, RuntimeError) as err:
            print(f"spark-serve: cluster watcher: {err}", file=sys.stderr, flush=True)
            sleep(every_s)
            continue
        reason = lost_reason(members, formed)
        write_document(
            state_dir, CLUSTER_FILE, {**members.to_json("lost" if reason else "joined"), "error": reason}
        )
        if reason:
            print(
                f"spark-serve: {reason}: ending the engine so the head restarts", file=sys.stderr, flush=True
            )
            end_engine()
            return reason
        sleep(every_s)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark-serve-cluster-watch")
    parser.add_argument("--address", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--engine-pid", type=int, required=True)
    parser.add_argument("--member", action="append", default=[], help="a node that formed the cluster")
    args = parser.parse_args(argv)
    flag = {"stop": False}

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        flag["stop"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from .node import RayNodes

    reader = RayNodes(args.address)  # the auth settings are in this process's environment
    try:
        watch(
            reader,
            args.expected,
            args.state_dir,
            engine_alive=lambda: os.getppid() == args.engine_pid,
            end_engine=lambda: os.kill(args.engine_pid, signal.SIGTERM),
            stopped=lambda: flag["stop"],
            formed=args.member,
        )
    finally:
        reader.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
