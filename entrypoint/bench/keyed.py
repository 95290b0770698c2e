"""Run llama-benchy with the API key from the environment, never on a command line.

llama-benchy takes its key only as ``--api-key``; anything on a process's
command line can be read by every user of the host (``ps``). ``spark-serve
bench`` runs this module instead, with the key in ``SPARK_SERVE_BENCH_KEY``:
it is added to llama-benchy's arguments inside this process, where
``/proc/<pid>/cmdline`` does not see it.
"""

from __future__ import annotations

import os
import sys

KEY_ENV = "SPARK_SERVE_BENCH_KEY"


def main() -> None:
    key = os.environ.pop(KEY_ENV, "") or "EMPTY"
    sys.argv = ["llama-benchy", "--api-key", key, *sys.argv[1:]]
    from llama_benchy.__main__ import main as benchy

    benchy()


if __name__ == "__main__":
    main()
