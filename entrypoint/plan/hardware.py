"""The hardware table (``configs/hardware.yaml``) and the device a plan is for (pure).

A :class:`Device` is either detected (NVML plus ``/proc/meminfo``, in
:mod:`entrypoint.inputs.device`) or named (``HARDWARE`` / ``--hardware``); both end
here as plain data, so every decision that depends on hardware is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..shipped import configs
from .tables import load_yaml_table

GB = 1_000_000_000
GIB = 1 << 30
MemoryKind = Literal["unified", "dedicated", "host"]


class HardwareSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    description: str = ""
    nvml_names: list[str] = Field(default_factory=list)
    compute_capability: Annotated[float, Field(ge=7.0)] | None
    memory: MemoryKind
    memory_gb: Annotated[float, Field(gt=0)]
    bandwidth_gb_s: Annotated[float, Field(gt=0)] | None
    native_fp4: bool
    overhead_gb: Annotated[float, Field(ge=0)]
    precheck_gb: Annotated[float, Field(ge=0)] = 0.0
    reserve_gb: Annotated[float, Field(ge=0)] = 0.0
    nvfp4_linear_backend: str | None = None
    nvfp4_moe_backend: str | None = None


class HardwareTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    native_fp4_backends: list[str]
    devices: dict[str, HardwareSpec]

    def match(self, nvml_name: str) -> str | None:
        """The table entry whose ``nvml_names`` occur in NVML's device name."""
        lowered = nvml_name.lower()
        for key, spec in self.devices.items():
            if any(part.lower() in lowered for part in spec.nvml_names):
                return key
        return None


def default_hardware_file() -> Path:
    return configs("hardware.yaml")


def load_table(path: Path | None = None) -> HardwareTable:
    return load_yaml_table(path or default_hardware_file(), HardwareTable, "hardware table")


@dataclass(frozen=True)
class Device:
    """The hardware one plan is for: one GPU (or the host, for the CPU build)."""

    key: str  # table entry, or "unknown" for a GPU not in the table
    name: str
    compute_capability: float | None
    memory: MemoryKind
    total_bytes: int
    available_bytes: int | None  # measured now (MemAvailable / NVML free); None when named
    bandwidth_bytes_per_s: float | None
    native_fp4: bool
    overhead_bytes: int
    reserve_bytes: int
    source: str  # "NVML", "/proc/meminfo", or the variable / flag that named it
    nvfp4_linear_backend: str | None = None  # for W4A4 NVFP4 linears (derived profiles)
    nvfp4_moe_backend: str | None = None  # for W4A4 NVFP4 MoE experts (derived profiles)
    precheck_bytes: int = 0  # what vLLM's own processes hold when its start check reads free memory

    @property
    def label(self) -> str:
        cc = f"SM {self.compute_capability:g}" if self.compute_capability is not None else "no CUDA GPU"
        return f"{self.key} ({self.name}, {cc}, {self.total_bytes / GB:.0f} GB {self.memory})"


def named_device(table: HardwareTable, key: str, source: str) -> Device:
    spec = table.devices[key]
    return from_spec(key, spec, source, total_bytes=int(spec.memory_gb * GB), available_bytes=None)


def from_spec(
    key: str,
    spec: HardwareSpec,
    source: str,
    *,
    total_bytes: int,
    available_bytes: int | None,
    name: str = "",
) -> Device:
    return Device(
        key=key,
        name=name or spec.description,
        compute_capability=spec.compute_capability,
        memory=spec.memory,
        total_bytes=total_bytes,
        available_bytes=available_bytes,
        bandwidth_bytes_per_s=spec.bandwidth_gb_s * GB if spec.bandwidth_gb_s else None,
        native_fp4=spec.native_fp4,
        overhead_bytes=int(spec.overhead_gb * GIB),
        reserve_bytes=int(spec.reserve_gb * GIB),
        source=source,
        nvfp4_linear_backend=spec.nvfp4_linear_backend,
        nvfp4_moe_backend=spec.nvfp4_moe_backend,
        precheck_bytes=int(spec.precheck_gb * GIB),
    )


def unknown_gpu(
    name: str, cc: float | None, total_bytes: int, available: int | None, unified: bool
) -> Device:
    """A GPU the table does not list: planned from what NVML says, no bandwidth figure."""
    return Device(
        key="unknown",
        name=name,
        compute_capability=cc,
        memory="unified" if unified else "dedicated",
        total_bytes=total_bytes,
        available_bytes=available,
        bandwidth_bytes_per_s=None,
        native_fp4=cc is not None and cc >= 10.0,
        overhead_bytes=int((6.0 if unified else 3.0) * GIB),
        reserve_bytes=int(8 * GIB) if unified else 0,
        source="NVML",
        precheck_bytes=int(3.0 * GIB) if unified else 0,  # as the gb10 entry (configs/hardware.yaml)
    )
