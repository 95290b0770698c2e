"""Which hardware this is: NVML for the GPU, ``/proc/meminfo`` for unified memory.

On a GB10 (DGX Spark) NVML's memory queries answer NotSupported, because the
GPU shares the system's LPDDR5X; its memory is then read from
``/proc/meminfo`` (MemTotal, MemAvailable). Without NVML or a GPU the plan is
for the host (the CPU build). ``HARDWARE`` / ``--hardware`` names a table
entry instead of detecting, so a plan for a Spark can be made on a laptop.
Every dependency (the NVML module, the meminfo path) is an argument.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import SettingError
from ..plan.hardware import Device, HardwareTable, from_spec, named_device, unknown_gpu
from ..plan.profile import suggest

MEMINFO = Path("/proc/meminfo")


def read_meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """/proc/meminfo as bytes per field ({} when unreadable)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    fields: dict[str, int] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return fields


def load_nvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


@dataclass
class GpuFacts:
    """What NVML told about GPU 0 and the driver (None where it would not say)."""

    name: str
    compute_capability: float | None
    memory_total: int | None  # None: NotSupported (unified memory)
    memory_free: int | None
    count: int
    driver: str | None = None
    cuda_driver: str | None = None
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)


def nvml_facts(loader: Callable[[], Any] = load_nvml) -> GpuFacts | None:
    """GPU 0 through NVML, or None when there is no NVML or no GPU."""
    nvml = loader()
    if nvml is None:
        return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no GPU here
        return None
    try:
        count = int(nvml.nvmlDeviceGetCount())
        if count == 0:
            return None
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        raw = nvml.nvmlDeviceGetName(handle)
        facts = GpuFacts(raw.decode() if isinstance(raw, bytes) else str(raw), None, None, None, count)

        def ask(read: Callable[[], Any]) -> Any:
            try:
                return read()
            except nvml.NVMLError:
                return None

        cc = ask(lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle))
        facts.compute_capability = float(f"{cc[0]}.{cc[1]}") if cc else None
        memory = ask(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            facts.memory_total, facts.memory_free = int(memory.total), int(memory.free)
        driver = ask(nvml.nvmlSystemGetDriverVersion)
        facts.driver = driver.decode() if isinstance(driver, bytes) else driver
        cuda = ask(nvml.nvmlSystemGetCudaDriverVersion)
        facts.cuda_driver = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        procs = ask(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
        facts.processes = [(int(p.pid), getattr(p, "usedGpuMemory", None)) for p in procs]
        return facts
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def detect(table: HardwareTable, facts: GpuFacts | None, meminfo: Mapping[str, int]) -> Device:
    """Pure: the device from NVML's facts and /proc/meminfo."""
    mem_total, mem_avail = meminfo.get("MemTotal", 0), meminfo.get("MemAvailable")
    if facts is None:
        return from_spec(
            "cpu", table.devices["cpu"], "/proc/meminfo", total_bytes=mem_total, available_bytes=mem_avail
        )
    unified = facts.memory_total is None
    total = mem_total if unified else int(facts.memory_total or 0)
    available = mem_avail if unified else facts.memory_free
    key = table.match(facts.name)
    if key is None:
        return unknown_gpu(facts.name, facts.compute_capability, total, available, unified)
    spec = table.devices[key]
    device = from_spec(key, spec, "NVML", total_bytes=total, available_bytes=available, name=facts.name)
    if facts.compute_capability is not None and facts.compute_capability != spec.compute_capability:
        device = Device(**{**device.__dict__, "compute_capability": facts.compute_capability})
    return device


def choose(
    table: HardwareTable,
    named: tuple[str, str] | None,
    facts: Callable[[], GpuFacts | None],
    meminfo: Callable[[], Mapping[str, int]],
) -> Device:
    """``named`` = (value, origin) from HARDWARE / --hardware; else detect."""
    if named is not None:
        value, origin = named
        if value not in table.devices:
            known = sorted(table.devices)
            hint = suggest(value, known)
            raise SettingError(
                origin,
                f"unknown hardware '{value}'",
                (f"did you mean '{hint}'? " if hint else "") + f"choose one of: {', '.join(known)}",
            )
        return named_device(table, value, origin)
    return detect(table, facts(), meminfo())
