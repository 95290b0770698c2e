"""Hardware detection (NVML stand-in, /proc/meminfo through a path) and what
hardware changes in a plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ExitCode, HardwareUnsupportedError, SettingError
from entrypoint.inputs.device import choose, detect, nvml_facts, read_meminfo
from entrypoint.plan.command import build_command
from entrypoint.plan.hardware import GB, load_table
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import resolve
from tests.conftest import PROFILES
from tests.support.nvml import FakeNvml

TABLE = load_table()
CATALOG = Catalog([PROFILES])
MEMINFO = (
    "MemTotal:       128470708 kB\nMemFree:         2936012 kB\n"
    "MemAvailable:   54525952 kB\nCached:         50331648 kB\n"
)


def meminfo(tmp_path: Path) -> dict[str, int]:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    return read_meminfo(path)


def test_gb10_memory_not_supported_means_unified_from_meminfo(tmp_path: Path) -> None:
    facts = nvml_facts(lambda: FakeNvml("NVIDIA GB10", memory_supported=False, cc=(12, 1)))
    device = detect(TABLE, facts, meminfo(tmp_path))
    assert (device.key, device.memory, device.compute_capability, device.native_fp4) == (
        "gb10",
        "unified",
        12.1,
        True,
    )
    assert device.total_bytes == 128470708 * 1024 and device.available_bytes == 54525952 * 1024
    assert device.bandwidth_bytes_per_s == 273 * GB and device.source == "NVML"
    assert facts is not None and facts.driver == "580.95.05" and facts.cuda_driver == "13.0"


@pytest.mark.parametrize(
    ("name", "cc", "total", "key", "fp4"),
    [
        ("NVIDIA B200", (10, 0), 180 * GB, "b200", True),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", (12, 0), 96 * GB, "rtx-pro-6000", True),
        ("NVIDIA H100 80GB HBM3", (9, 0), 80 * GB, "h100", False),
    ],
)
def test_dedicated_gpus_are_matched_by_name(
    tmp_path: Path, name: str, cc: tuple[int, int], total: int, key: str, fp4: bool
) -> None:
    facts = nvml_facts(lambda: FakeNvml(name, memory_supported=True, cc=cc, total=total, free=total - GB))
    device = detect(TABLE, facts, meminfo(tmp_path))
    assert (device.key, device.memory, device.native_fp4) == (key, "dedicated", fp4)
    assert device.total_bytes == total and device.available_bytes == total - GB
    assert device.compute_capability == float(f"{cc[0]}.{cc[1]}")


def test_no_nvml_or_no_driver_plans_for_the_host(tmp_path: Path) -> None:
    for loader in (lambda: None, lambda: FakeNvml("x", True, fail_init=True)):
        device = detect(TABLE, nvml_facts(loader), meminfo(tmp_path))
        assert (device.key, device.memory, device.compute_capability) == ("cpu", "host", None)
        assert device.total_bytes == 128470708 * 1024


def test_an_unlisted_gpu_is_planned_from_what_nvml_says(tmp_path: Path) -> None:
    facts = nvml_facts(lambda: FakeNvml("NVIDIA L40S", memory_supported=True, cc=(8, 9), total=48 * GB))
    device = detect(TABLE, facts, meminfo(tmp_path))
    assert (device.key, device.total_bytes, device.bandwidth_bytes_per_s) == ("unknown", 48 * GB, None)


def test_hardware_named_wins_over_detection_and_unknown_names_suggest() -> None:
    def never() -> None:
        raise AssertionError("detection must not run when hardware is named")

    device = choose(TABLE, ("gb10", "HARDWARE"), never, never)  # type: ignore[arg-type]
    assert device.key == "gb10" and device.available_bytes is None and device.source == "HARDWARE"
    with pytest.raises(SettingError) as err:
        choose(TABLE, ("gb01", "--hardware"), never, never)  # type: ignore[arg-type]
    assert "--hardware" in str(err.value) and "did you mean 'gb10'" in str(err.value)


def named(key: str) -> object:
    return choose(TABLE, (key, "HARDWARE"), lambda: None, dict)


def argv(profile: str, key: str, variant: str | None = None) -> list[str]:
    plan = resolve(CATALOG, {"PROFILE": profile, "VARIANT": variant or ""}, {}, named(key), TABLE)  # type: ignore[arg-type]
    return build_command(plan, "/m", {}).argv


def test_blackwell_keeps_the_fp4_backends_hopper_drops_them_with_the_reason() -> None:
    assert argv("nex-n2-mini-nvfp4", "gb10").count("flashinfer_cutlass") == 2
    hopper = argv("nex-n2-mini-nvfp4", "h100")
    assert "--linear-backend" not in hopper and "--moe-backend" not in hopper
    plan = resolve(CATALOG, {"PROFILE": "nex-n2-mini-nvfp4"}, {}, named("h100"), TABLE)  # type: ignore[arg-type]
    setting = plan.settings["linear_backend"]
    assert setting.value is None and setting.source == "hardware" and "no native FP4" in setting.origin


def test_below_the_minimum_compute_capability_is_refused(tmp_path: Path) -> None:
    (tmp_path / "new.yaml").write_text(
        "repo: a/b\nserved_model_name: m\nquantization: ct-nvfp4\n"
        "hardware: {min_memory_gb: 8, min_compute_capability: 10.0}\n"
    )
    with pytest.raises(HardwareUnsupportedError) as err:
        resolve(Catalog([tmp_path]), {"PROFILE": "new"}, {}, named("h100"), TABLE)  # type: ignore[arg-type]
    assert err.value.exit_code == ExitCode.HARDWARE_UNSUPPORTED and "below the profile's minimum 10" in str(
        err.value
    )


def test_a_profile_override_for_one_hardware_applies_only_there(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "repo: a/b\nserved_model_name: m\nquantization: ct-nvfp4\nhardware: {min_memory_gb: 8}\n"
        "vllm: {max_num_seqs: 64}\nhardware_overrides:\n  rtx-5090: {vllm: {max_num_seqs: 8}}\n"
    )
    catalog = Catalog([tmp_path])
    small = resolve(catalog, {"PROFILE": "p"}, {}, named("rtx-5090"), TABLE)  # type: ignore[arg-type]
    big = resolve(catalog, {"PROFILE": "p"}, {}, named("b200"), TABLE)  # type: ignore[arg-type]
    assert small.value("max_num_seqs") == 8 and small.settings["max_num_seqs"].source == "hardware"
    assert big.value("max_num_seqs") == 64
