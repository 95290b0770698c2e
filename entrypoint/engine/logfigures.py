"""vLLM 0.32's own memory figures, read from the lines it logs at start (pure).

The lines (vLLM 0.32.0's source):
- ``Model loading took 4.21 GiB memory and 3.1 seconds`` (``gpu_model_runner.load_model``;
  the CPU build's runner overrides it and says nothing);
- ``Graph capturing finished in 5 secs, took 0.53 GiB`` (CUDA graphs);
- ``GPU KV cache size: 1,234,567 tokens, Maximum concurrency for 32,768 tokens per
  request: 37.68x`` (``kv_cache_utils.update_kv_cache_capacity``; ``CPU KV cache
  size`` on the CPU build);
- a refused start: ``Free memory on device cuda:0 (102.2/121.69 GiB) on startup is
  less than desired GPU memory utilization (0.87, 105.87 GiB)``
  (``v1/worker/utils.request_memory``), or on the CPU build ``Available memory on node
  0 (X/Y GiB) on startup is less than desired CPU memory utilization``.

vLLM formats GiB to two decimals (``format_gib``), so a figure read here is within
5 MiB of vLLM's.
"""

from __future__ import annotations

import re

from ..meta import EngineFigures

GIB = 1 << 30  # vLLM's GiB_bytes
_NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"
WEIGHTS = re.compile(rf"Model loading took {_NUMBER} GiB memory")
GRAPHS = re.compile(rf"Graph capturing finished in \S+ secs, took {_NUMBER} GiB")
KV = re.compile(
    rf"KV cache size: {_NUMBER} tokens, Maximum concurrency for {_NUMBER} tokens per request: {_NUMBER}x"
)
REFUSED = re.compile(
    rf"(?:Free memory on device \S+|Available memory on node \S+) \({_NUMBER}/{_NUMBER} GiB\) on startup"
)
# What the launcher's log keeper keeps of the engine's output.
KEPT = re.compile("|".join(p.pattern for p in (WEIGHTS, GRAPHS, KV, REFUSED)))


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def read_figures(lines: list[str]) -> EngineFigures:
    """The figures in ``lines`` (the last of each kind wins: a later process's line)."""
    found: dict[str, float | int] = {}
    for line in lines:
        if m := WEIGHTS.search(line):
            found["weights_bytes"] = int(_num(m[1]) * GIB)
        elif m := GRAPHS.search(line):
            found["graphs_bytes"] = int(_num(m[1]) * GIB)
        elif m := KV.search(line):
            found["kv_tokens"], found["max_concurrency"] = int(_num(m[1])), _num(m[3])
        elif m := REFUSED.search(line):
            found["free_at_check_bytes"] = int(_num(m[1]) * GIB)
            found["total_at_check_bytes"] = int(_num(m[2]) * GIB)
    return EngineFigures(**found)  # type: ignore[arg-type]
