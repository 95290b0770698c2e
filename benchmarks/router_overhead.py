"""Generation tokens/s through the MODELS router ÷ straight to the engine. Prints; never asserts.

One `spark-serve launch` with MODELS: two tiny checkpoints, an engine each behind
vLLM's router (`vllm-router --enable-igw`) on PORT. One load: CONCURRENCY clients
sending /v1/completions of TOKENS tokens (`ignore_eos`) for the first model,
ROUND_REQUESTS requests a round. Rounds alternate, in pairs whose order flips each
time, between

- router: the requests go to PORT, the router picks the engine by `model`;
- direct: the same requests go to that engine's own port.

Both modes run in this one process against the same engine, side by side, so the
machine's noise (about ±15 % round to round on a shared 2-core machine) falls on
both: the result is pooled over the pairs (total tokens ÷ total time in each mode)
with the median of the per-pair ratios beside it.

Target: router ÷ direct >= 0.98.

Run: .venv/bin/python benchmarks/router_overhead.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import load  # noqa: E402
from tests.conftest import clean_env  # noqa: E402
from tests.support.checkpoints import bf16_llama  # noqa: E402
from tests.support.engine import CPU_ENGINE, CPU_ENGINE_ENV, free_port, spawn_launch, stop  # noqa: E402
from tests.support.sidecar import until  # noqa: E402

PAIRS = 20
CONCURRENCY = 4
TOKENS = 64
ROUND_REQUESTS = 48
NAMES = ("first", "second")


def generate(url: str) -> tuple[int, float]:
    return load.generate(url, NAMES[0], TOKENS, CONCURRENCY, ROUND_REQUESTS)


def routed(url: str) -> bool:
    try:
        return load.one_request(url, NAMES[0], TOKENS) == TOKENS
    except OSError:
        return False


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = bf16_llama(root / "ckpt")
        models = []
        for name in NAMES:  # the same checkpoint under a folder per served name (one slug each)
            (root / name).symlink_to(checkpoint)
            models.append(
                {"model": str(root / name), "settings": {"served_model_name": name, "max_model_len": 512}}
            )
        (root / "stack.yaml").write_text(json.dumps({"models": models}))
        port, engine_port = free_port(), free_port()
        env = clean_env(
            MODELS=str(root / "stack.yaml"),
            STATE_DIR=str(root / "state"),
            HOST="127.0.0.1",
            PORT=str(port),
            ENGINE_PORT=str(engine_port),
            ENGINE_COMMAND=CPU_ENGINE,
            ROUTER_COMMAND=str(Path(sys.executable).parent / "vllm-router"),
            **{**CPU_ENGINE_ENV, "OMP_NUM_THREADS": "1"},
        )
        proc = spawn_launch(env, root / "launch.log")
        router, direct = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{engine_port}"
        try:
            until(lambda: routed(router), 400, "the first model answers through the router")
            generate(router)  # unmeasured: allocator, connection pools
            (router_proc,) = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if "router" in " ".join(p.cmdline())
            ]
            router_cpu = 0.0
            totals = {"direct": [0, 0.0], "router": [0, 0.0]}
            ratios = []
            for i in range(PAIRS):
                rates = {}
                for mode in ("direct", "router") if i % 2 == 0 else ("router", "direct"):
                    before = sum(router_proc.cpu_times()[:2])
                    tokens, seconds = generate(router if mode == "router" else direct)
                    if mode == "router":
                        router_cpu += sum(router_proc.cpu_times()[:2]) - before
                    totals[mode][0] += tokens
                    totals[mode][1] += seconds
                    rates[mode] = tokens / seconds
                ratios.append(rates["router"] / rates["direct"])
                print(f"pair {i + 1}/{PAIRS}: direct {rates['direct']:.0f} tok/s, "
                      f"router {rates['router']:.0f} tok/s, ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
            direct_rate = totals["direct"][0] / totals["direct"][1]
            router_rate = totals["router"][0] / totals["router"][1]
            pooled = router_rate / direct_rate
            print(
                f"router CPU while the router rounds ran: {router_cpu:.2f} s in {totals['router'][1]:.0f} s "
                f"({100 * router_cpu / totals['router'][1]:.1f} % of one core)"
            )
            print(f"median of the pair ratios: {statistics.median(ratios):.3f}")
            print(
                f"generation tokens/s through the router / straight to the engine ({CONCURRENCY} clients, "
                f"{TOKENS} tokens each): {router_rate:.0f} / {direct_rate:.0f} = {pooled:.3f} "
                f"(target >= 0.98) {'OK' if pooled >= 0.98 else 'UNDER'}"
            )
        finally:
            stop(proc, grace=60)


if __name__ == "__main__":
    main()
