"""Samples a Prometheus endpoint (the sidecar's /metrics, else vLLM's) while a benchmark runs."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

_SUMS = {
    "sparkserve_gpu_power_watts": "power_watts",
    "vllm:spec_decode_num_accepted_tokens_total": "accepted_tokens",
    "vllm:spec_decode_num_draft_tokens_total": "draft_tokens",
}
_MAXES = {
    "sparkserve_gpu_temperature_celsius": "temperature_celsius",
    "vllm:kv_cache_usage_perc": "kv_usage",
}


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock, as llama-benchy's progress events
    power_watts: float | None = None  # all GPUs
    temperature_celsius: float | None = None  # the hottest GPU
    kv_usage: float | None = None  # 0-1, the fullest engine
    accepted_tokens: float | None = None  # speculative decoding counters
    draft_tokens: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_sample(text: str, at: float, model: str | None = None) -> Sample:
    """The GPU's series over the device; vLLM's over ``model``'s engine alone where the
    page holds several engines' (MODELS: each with its ``model_name``)."""
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    engines = {s.labels.get("model_name") for s in samples if s.name.startswith("vllm:")}
    found: dict[str, float] = {}
    for sample in samples:
        if len(engines) > 1 and sample.name.startswith("vllm:") and sample.labels.get("model_name") != model:
            continue  # another model's engine
        if sample.name in _SUMS:
            key = _SUMS[sample.name]
            found[key] = found.get(key, 0.0) + sample.value
        elif sample.name in _MAXES:
            key = _MAXES[sample.name]
            found[key] = max(found.get(key, sample.value), sample.value)
    return Sample(at, **found)


class Sampler:
    """Reads ``url`` every ``interval`` seconds on a thread until :meth:`stop`."""

    def __init__(self, url: str, interval: float = 1.0, model: str | None = None) -> None:
        self.url, self.interval, self.model = url, interval, model
        self.samples: list[Sample] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=max(self.interval, 2.0)) as response:
                    self.samples.append(parse_sample(response.read().decode(), time.time(), self.model))
            except (OSError, ValueError):  # a missed sample, not a failed benchmark
                self.failures += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
