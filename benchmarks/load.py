"""The closed-loop load both throughput benchmarks drive: clients sending /v1/completions
of a fixed number of tokens (``ignore_eos``), one round at a time."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.support.engine import http_json


def one_request(url: str, model: str, tokens: int) -> int:
    body = {"model": model, "prompt": "The light of the sun", "max_tokens": tokens, "ignore_eos": True}
    return int(http_json(url + "/v1/completions", body, timeout=300)["usage"]["completion_tokens"])


def generate(url: str, model: str, tokens: int, concurrency: int, requests: int) -> tuple[int, float]:
    """One round of load: (tokens generated, seconds taken)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = sum(pool.map(lambda _: one_request(url, model, tokens), range(requests)))
    return done, time.perf_counter() - start
