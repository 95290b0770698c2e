"""GPU telemetry through NVML (nvidia-ml-py), sampled off the event loop.

Every reading is optional: a field NVML does not support is skipped, and
without NVML or a GPU there are simply no GPU readings. On a GB10 (DGX Spark)
NVML answers "not supported" for memory because CPU and GPU share one LPDDR5X
pool; system memory is reported instead, marked ``unified``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entrypoint.inputs.device import MEMINFO, load_nvml, read_meminfo


@dataclass
class GpuReading:
    index: int
    name: str
    power_watts: float | None = None
    temperature_celsius: float | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    memory_kind: str = "dedicated"
    errors: list[str] = field(default_factory=list)


def system_memory(meminfo: Path = MEMINFO) -> tuple[float, float] | None:
    """(used, total) bytes of system memory, from /proc/meminfo."""
    fields = read_meminfo(meminfo)
    if "MemTotal" not in fields or "MemAvailable" not in fields:
        return None
    return float(fields["MemTotal"] - fields["MemAvailable"]), float(fields["MemTotal"])


def available_memory(meminfo: Path = MEMINFO) -> int | None:
    """MemAvailable in bytes (system-wide, also inside a container), or None."""
    return read_meminfo(meminfo).get("MemAvailable")


class Nvml:
    """Initialises NVML once, lazily; remembers if it is unavailable."""

    def __init__(
        self,
        loader: Callable[[], Any] = load_nvml,
        memory: Callable[[], tuple[float, float] | None] = system_memory,
    ) -> None:
        self._loader, self._memory = loader, memory
        self._nvml: Any = None
        self._failed = False

    def _module(self) -> Any:
        if self._nvml is None and not self._failed:
            nvml = self._loader()
            try:
                if nvml is None:
                    raise RuntimeError("nvidia-ml-py is not installed")
                nvml.nvmlInit()
                self._nvml = nvml
            except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU here
                self._failed = True
        return self._nvml

    def read(self) -> list[GpuReading]:
        nvml = self._module()
        if nvml is None:
            return []
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError:
            return []
        return [self._read_one(nvml, i) for i in range(count)]

    def _read_one(self, nvml: Any, index: int) -> GpuReading:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        reading = GpuReading(index, name.decode() if isinstance(name, bytes) else str(name))

        def attempt(what: str, read: Callable[[], Any]) -> Any:
            try:
                return read()
            except nvml.NVMLError as err:
                reading.errors.append(f"{what}: {err}")
                return None

        power = attempt("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        reading.power_watts = power / 1000.0 if power is not None else None
        reading.temperature_celsius = attempt(
            "temperature", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        )
        util = attempt("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        reading.utilization_ratio = util.gpu / 100.0 if util is not None else None
        memory = attempt("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            reading.memory_used_bytes, reading.memory_total_bytes = float(memory.used), float(memory.total)
        elif (unified := self._memory()) is not None:
            reading.memory_used_bytes, reading.memory_total_bytes = unified
            reading.memory_kind = "unified"
        return reading


@dataclass(frozen=True)
class GpuSample:
    at: float
    readings: list[GpuReading]


class GpuSampler:
    """NVML read off the event loop once per interval; scrapes and heal evidence
    use the last readings and the recent history instead of calling NVML each time."""

    def __init__(self, nvml: Nvml, interval: float, clock: Callable[[], float], keep: int = 600) -> None:
        self.nvml, self.interval, self.clock, self.keep = nvml, interval, clock, keep
        self.history: list[GpuSample] = []

    @property
    def latest(self) -> list[GpuReading]:
        return self.history[-1].readings if self.history else []

    async def sample(self) -> None:
        readings = await asyncio.to_thread(self.nvml.read)
        self.history = [*self.history[-(self.keep - 1) :], GpuSample(self.clock(), readings)]

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # NVML failing mid-run: keep the last readings
                await self.sample()
            await asyncio.sleep(self.interval)

    def since(self, start: float) -> dict[str, Any]:
        """Power and utilization per GPU over the samples taken since ``start``."""
        samples = [s for s in self.history if s.at >= start] or self.history[-1:]
        per_gpu: dict[str, dict[str, Any]] = {}
        for sample in samples:
            for r in sample.readings:
                entry = per_gpu.setdefault(
                    str(r.index), {"name": r.name, "power_watts": [], "utilization": []}
                )
                if r.power_watts is not None:
                    entry["power_watts"].append(round(r.power_watts, 1))
                if r.utilization_ratio is not None:
                    entry["utilization"].append(r.utilization_ratio)
        return {
            "samples": len(samples),
            "from": samples[0].at if samples else None,
            "gpus": {
                index: {
                    "name": e["name"],
                    "power_watts_mean": _mean(e["power_watts"]),
                    "power_watts_max": max(e["power_watts"], default=None),
                    "utilization_mean": _mean(e["utilization"]),
                }
                for index, e in per_gpu.items()
            },
        }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None
