"""A stand-in for pynvml: no machine here has a GB10 (or any NVIDIA GPU), so
NVML's answers for each kind of GPU are mimicked, "Not Supported" memory
queries included (what a GB10's NVML answers)."""

from __future__ import annotations

from types import SimpleNamespace


class FakeNvml:
    """Mimics pynvml's API for one GPU."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(
        self,
        name: str,
        memory_supported: bool,
        fail_init: bool = False,
        *,
        cc: tuple[int, int] = (9, 0),
        total: int = 80 * 2**30,
        free: int = 70 * 2**30,
        processes: list[tuple[int, int]] | None = None,
    ) -> None:
        self.name, self.memory_supported, self.fail_init = name, memory_supported, fail_init
        self.cc, self.total, self.free, self.processes = cc, total, free, processes or []

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return object()

    def nvmlDeviceGetName(self, handle: object) -> str:
        return self.name

    def nvmlDeviceGetCudaComputeCapability(self, handle: object) -> tuple[int, int]:
        return self.cc

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.95.05"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.processes]

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        return 45_500

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        return 61

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> SimpleNamespace:
        return SimpleNamespace(gpu=87)

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> SimpleNamespace:
        if not self.memory_supported:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(used=self.total - self.free, total=self.total, free=self.free)
