"""Prometheus collectors computed on scrape (never cached state in gauges)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from entrypoint import __version__
from entrypoint.state import PHASES

from .generation import KINDS
from .gpu import GpuReading
from .monitor import Monitor


class SidecarCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        state = self.monitor.state or {}
        info = InfoMetricFamily("sparkserve", "spark-serve identity and what it serves")
        info.add_metric(
            [],
            {
                "version": __version__,
                "vllm_version": self.monitor.vllm_version or "",
                "profile": str(state.get("profile") or ""),
                "variant": str(state.get("variant") or ""),
                "model": str(state.get("repo") or state.get("model_path") or ""),
                "revision": str(state.get("revision") or ""),
            },
        )
        yield info
        phase = GaugeMetricFamily("sparkserve_phase", "1 for the current launcher phase", labels=["phase"])
        current = self.monitor.verdict.phase
        for name in PHASES:
            phase.add_metric([name], 1.0 if name == current else 0.0)
        yield phase
        download = state.get("download") or {}
        if download:
            yield GaugeMetricFamily(
                "sparkserve_download_size_bytes",
                "bytes the checkpoint download needs",
                value=float(download.get("bytes_total", 0)),
            )
            yield GaugeMetricFamily(
                "sparkserve_download_completed_bytes",
                "bytes of the checkpoint on disk",
                value=float(download.get("bytes_done", 0)),
            )
        waiting = state.get("waiting") or {}
        if self.monitor.verdict.phase == "waiting-for-memory" and waiting.get("need_bytes") is not None:
            yield GaugeMetricFamily(
                "sparkserve_start_memory_needed_bytes",
                "memory the engine start waits for",
                value=float(waiting["need_bytes"]),
            )
            yield GaugeMetricFamily(
                "sparkserve_start_memory_available_bytes",
                "memory available when the launcher last looked",
                value=float(waiting.get("available_bytes") or 0),
            )
        ttr = self.monitor.time_to_ready()
        if ttr is not None:
            yield GaugeMetricFamily(
                "sparkserve_time_to_ready_seconds", "launch start to first ready", value=ttr
            )
        yield GaugeMetricFamily(
            "sparkserve_ready",
            "1 when /health/ready answers 200",
            value=1.0 if self.monitor.verdict.ready else 0.0,
        )
        yield from CheckCollector(self.monitor).collect()
        yield from cluster_metrics(self.monitor.cluster)


def cluster_metrics(cluster: dict[str, Any] | None) -> Iterator[Metric]:
    """Membership of a multi-node cluster, from the head's cluster.json (nothing on one node)."""
    if not cluster:
        return
    nodes = GaugeMetricFamily("sparkserve_cluster_nodes", "cluster nodes by state", labels=["state"])
    nodes.add_metric(["expected"], float(cluster.get("expected") or 0))
    nodes.add_metric(["joined"], float(cluster.get("joined") or 0))
    yield nodes
    up = GaugeMetricFamily(
        "sparkserve_cluster_node_up", "1 while the node is alive in Ray", labels=["node", "role"]
    )
    for node in cluster.get("nodes") or []:
        up.add_metric([str(node.get("ip")), str(node.get("role") or "")], 1.0 if node.get("alive") else 0.0)
    yield up


class CheckCollector(Collector):
    """Warm-up, idle probes and heals."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        checks, healer = self.monitor.checks, self.monitor.healer
        if checks.warmup is not None and checks.warmup.ok:
            yield GaugeMetricFamily(
                "sparkserve_warmup_duration_seconds",
                "how long this engine start's warm-up generation took",
                value=checks.warmup.seconds,
            )
        duration = SummaryMetricFamily(
            "sparkserve_probe_duration_seconds",
            "the sidecar's own generations (warm-up, idle probe): count and seconds",
            labels=["kind"],
        )
        failures = CounterMetricFamily(
            "sparkserve_probe_failures",
            "the sidecar's generations that failed or timed out",
            labels=["kind"],
        )
        for kind in KINDS:
            stats = checks.stats[kind]
            duration.add_metric([kind], count_value=stats.sent, sum_value=stats.seconds)
            failures.add_metric([kind], stats.failed)
        yield duration
        yield failures
        yield GaugeMetricFamily(
            "sparkserve_probe_failures_in_row",
            "failed warm-ups, probes or confirmations in a row that count toward a heal (HEAL_AFTER)",
            value=checks.in_row,
        )
        stall = checks.stall
        yield GaugeMetricFamily(
            "sparkserve_engine_stalled_seconds",
            "seconds token counters have not moved while requests ran (0: moving); confirmations ask",
            value=stall.last.stalled_for if stall is not None else 0.0,
        )
        yield GaugeMetricFamily(
            "sparkserve_engine_saturated",
            "1 while requests wait and the KV cache is full: failed probes do not count toward a heal",
            value=1.0 if checks.load.saturated else 0.0,
        )
        yield GaugeMetricFamily(
            "sparkserve_engine_hung",
            "1 when the engine counts as hung (/health/engine answers 503)",
            value=1.0 if self.monitor.hung() else 0.0,
        )
        yield CounterMetricFamily(
            "sparkserve_heals", "hung engines this sidecar ended so they restart", value=healer.total
        )


class ScrapeCollector(Collector):
    """The outcome of this scrape's fetch of vLLM's /metrics."""

    def __init__(self, up: bool, duration: float, age: float = 0.0) -> None:
        self.up, self.duration, self.age = up, duration, age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "sparkserve_vllm_up", "1 when vLLM's /metrics answered this scrape", value=1.0 if self.up else 0.0
        )
        yield GaugeMetricFamily(
            "sparkserve_vllm_scrape_duration_seconds", "time to fetch vLLM's /metrics", value=self.duration
        )
        yield GaugeMetricFamily(
            "sparkserve_vllm_page_age_seconds",
            "age of the vLLM page in this scrape (a scrape takes the last page when a fetch is slow)",
            value=self.age,
        )


class GpuCollector(Collector):
    """GPU series from the sampler's last readings (NVML is never called on a scrape)."""

    def __init__(self, readings: Callable[[], list[GpuReading]]) -> None:
        self.readings = readings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        readings = self.readings()
        if not readings:
            return
        labels = ["gpu", "name"]
        power = GaugeMetricFamily("sparkserve_gpu_power_watts", "GPU power draw", labels=labels)
        temp = GaugeMetricFamily("sparkserve_gpu_temperature_celsius", "GPU temperature", labels=labels)
        util = GaugeMetricFamily("sparkserve_gpu_utilization_ratio", "GPU busy ratio (0-1)", labels=labels)
        used = GaugeMetricFamily(
            "sparkserve_gpu_memory_used_bytes",
            "GPU memory in use; unified = system memory",
            labels=[*labels, "memory"],
        )
        total = GaugeMetricFamily(
            "sparkserve_gpu_memory_total_bytes",
            "GPU memory size; unified = system memory",
            labels=[*labels, "memory"],
        )
        for r in readings:
            base = [str(r.index), r.name]
            if r.power_watts is not None:
                power.add_metric(base, r.power_watts)
            if r.temperature_celsius is not None:
                temp.add_metric(base, float(r.temperature_celsius))
            if r.utilization_ratio is not None:
                util.add_metric(base, r.utilization_ratio)
            if r.memory_used_bytes is not None and r.memory_total_bytes is not None:
                used.add_metric([*base, r.memory_kind], r.memory_used_bytes)
                total.add_metric([*base, r.memory_kind], r.memory_total_bytes)
        for family in (power, temp, util, used, total):
            if family.samples:
                yield family
