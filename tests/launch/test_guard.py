"""The gate before exec, in process: the memory guard against a GB10 whose NVML
is the stand-in (no GB10 here) and whose /proc/meminfo is a file the test
rewrites, the halt, and the wake-up by ``spark-serve reset``."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from entrypoint.inputs.device import detect, nvml_facts, read_meminfo
from entrypoint.launch.guard import Runtime
from entrypoint.launch.reset import reset
from entrypoint.launch.run import launch
from entrypoint.plan.hardware import load_table
from entrypoint.plan.measured import with_margin
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import Plan, resolve
from tests.conftest import PROFILES
from tests.launch.test_run import Exec, offline_chain
from tests.support.configs import seed_config, write_checkpoint
from tests.support.nvml import FakeNvml

GIB = 1 << 30
TOTAL_KB = 128 * 1024 * 1024  # 128 GiB


def meminfo_text(available_gib: float) -> str:
    kb = int(available_gib * 1024 * 1024)
    return f"MemTotal: {TOTAL_KB} kB\nMemFree: {kb} kB\nMemAvailable: {kb} kB\n"


def gb10_nvml() -> FakeNvml:
    return FakeNvml("NVIDIA GB10", memory_supported=False, cc=(12, 1), processes=[(4242, 30 * GIB)])


def gb10_plan(tmp_path: Path, meminfo: Path, **env: str) -> tuple[Plan, dict[str, str]]:
    ckpt = write_checkpoint(tmp_path / "ckpt", seed_config("llama"))
    environ = {
        "MODEL": str(ckpt),
        "STATE_DIR": str(tmp_path / "state"),
        "ENGINE_COMMAND": "true {model}",
        "PATH": "/usr/bin:/bin",
        "MAX_MODEL_LEN": "4096",
        **env,
    }
    table = load_table()
    device = detect(table, nvml_facts(gb10_nvml), read_meminfo(meminfo))
    assert device.key == "gb10" and device.memory == "unified"
    return resolve(Catalog([PROFILES]), environ, {}, device, table), environ


def state(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "state" / "launcher.json").read_text()))


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def phase_is(tmp_path: Path, phase: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return state(tmp_path).get("phase") == phase
        except (OSError, ValueError):
            return False

    return check


def run_in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_start_waits_for_memory_then_execs_once_it_is_freed(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(100))  # detection sees the whole box
    plan, env = gb10_plan(tmp_path, meminfo)
    meminfo.write_text(meminfo_text(2))  # a crashed predecessor still holds memory
    runtime = Runtime(meminfo=meminfo, nvml=gb10_nvml, poll_s=0.05)
    seen: list[dict[str, Any]] = []

    def free_later() -> None:
        wait_until(phase_is(tmp_path, "waiting-for-memory"))
        seen.append(state(tmp_path))
        meminfo.write_text(meminfo_text(100))

    helper = run_in_thread(free_later)
    fake = Exec()
    with pytest.raises(SystemExit):
        launch(offline_chain(plan), env, execvpe=fake, runtime=runtime)
    helper.join(5)
    waiting = seen[0]["waiting"]
    assert waiting["for"] == "memory" and waiting["available_bytes"] == 2 * GIB
    assert waiting["need_bytes"] > waiting["available_bytes"]
    assert waiting["processes"] == [{"pid": 4242, "bytes": 30 * GIB}]
    assert "pid 4242 (32.2 GB)" in waiting["reason"]
    assert len(fake.calls) == 1
    final = state(tmp_path)
    assert final["phase"] == "starting" and final["waiting"] is None and final["start_id"]


def test_memory_that_never_frees_halts_without_exec_until_reset(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(100))
    plan, env = gb10_plan(tmp_path, meminfo, MEMORY_WAIT_S="0.2")
    meminfo.write_text(meminfo_text(2))
    runtime = Runtime(meminfo=meminfo, nvml=gb10_nvml, poll_s=0.05)
    fake = Exec()
    halted: list[dict[str, Any]] = []

    def free_and_reset() -> None:
        wait_until(phase_is(tmp_path, "halted"))
        time.sleep(0.3)  # halted stays halted: nothing is started
        halted.append(state(tmp_path))
        assert fake.calls == []
        meminfo.write_text(meminfo_text(100))
        reset({"STATE_DIR": str(tmp_path / "state")}, {})

    helper = run_in_thread(free_and_reset)
    with pytest.raises(SystemExit):
        launch(offline_chain(plan), env, execvpe=fake, runtime=runtime)
    helper.join(5)
    assert halted[0]["waiting"]["for"] == "reset"
    assert "after waiting 0.2s" in halted[0]["error"] and "spark-serve reset" in halted[0]["waiting"]["fix"]
    assert len(fake.calls) == 1 and state(tmp_path)["phase"] == "starting"


def test_a_signal_while_waiting_ends_the_launcher_without_starting(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(100))
    plan, env = gb10_plan(tmp_path, meminfo)
    meminfo.write_text(meminfo_text(1))
    runtime = Runtime(meminfo=meminfo, nvml=gb10_nvml, poll_s=0.05)

    def stop_when_waiting() -> None:
        wait_until(phase_is(tmp_path, "waiting-for-memory"))
        runtime.stop.set()  # what the SIGTERM handler does

    helper = run_in_thread(stop_when_waiting)
    fake = Exec()
    with pytest.raises(SystemExit) as ended:
        launch(offline_chain(plan), env, execvpe=fake, runtime=runtime)
    helper.join(5)
    assert ended.value.code == 0 and fake.calls == []
    assert "stopped by a signal" in state(tmp_path)["error"]


def test_memory_wait_zero_skips_the_guard(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(100))
    plan, env = gb10_plan(tmp_path, meminfo, MEMORY_WAIT_S="0")
    meminfo.write_text(meminfo_text(1))
    fake = Exec()
    with pytest.raises(SystemExit):
        launch(
            offline_chain(plan),
            env,
            execvpe=fake,
            runtime=Runtime(meminfo=meminfo, nvml=gb10_nvml, poll_s=0.05),
        )
    assert len(fake.calls) == 1


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_utilization_is_set_at_start_from_memavailable_less_the_pre_check_use(tmp_path: Path) -> None:
    """vLLM compares ceil(total × utilization) with MemAvailable read once its own processes
    hold 3 GiB (a Spark's figure): the argv carries what passes at this moment, to 1/10,000."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(100))
    plan, env = gb10_plan(tmp_path, meminfo)
    meminfo.write_text(meminfo_text(61.5))  # another tenant holds some of it now
    fake = Exec()
    with pytest.raises(SystemExit):
        launch(offline_chain(plan), env, execvpe=fake, runtime=Runtime(meminfo=meminfo, nvml=gb10_nvml))
    ((_, argv, _),) = fake.calls
    total, available = TOTAL_KB * 1024, int(61.5 * GIB)
    util = float(_flag(argv, "--gpu-memory-utilization"))
    assert util == (available - 3 * GIB) * 10_000 // total / 10_000  # rounded down
    assert math.ceil(total * util) <= available - 3 * GIB  # vLLM's own check passes
    recorded = state(tmp_path)
    assert recorded["argv"] == argv and recorded["calibration"]["available_at_start"] == available


def test_a_start_vllm_refused_at_its_check_measures_the_pre_check_use_for_the_next(tmp_path: Path) -> None:
    """The log keeper kept vLLM's refusal ("Free memory on device … on startup"); the next
    launch folds it into the calibration store and starts with that figure (+ margin)."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(meminfo_text(100))
    plan, env = gb10_plan(tmp_path, meminfo)
    fake = Exec()
    with pytest.raises(SystemExit):
        launch(offline_chain(plan), env, execvpe=fake, runtime=Runtime(meminfo=meminfo, nvml=gb10_nvml))
    first = state(tmp_path)
    log = tmp_path / "state" / "starts" / f"{first['start_id']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # 9 GiB held by the check, not 3 (MiaAI-Lab/GLM-5.3-Flash-EXL3-2x-DGX-Sparks#47)
    log.write_text(
        "(EngineCore_DP0 pid=7) ERROR ValueError: Free memory on device cuda:0 (91.0/128.0 GiB) on "
        "startup is less than desired GPU memory utilization (0.7578, 97.0 GiB).\n"
    )
    again, env = gb10_plan(tmp_path, meminfo)
    chain = planned_chain_with_store(again, tmp_path)
    assert chain.memory is not None and chain.memory.precheck_bytes == with_margin(9 * GIB)
    fake = Exec()
    with pytest.raises(SystemExit):
        launch(chain, env, execvpe=fake, runtime=Runtime(meminfo=meminfo, nvml=gb10_nvml))
    ((_, argv, _),) = fake.calls
    util = float(_flag(argv, "--gpu-memory-utilization"))
    assert math.ceil(TOTAL_KB * 1024 * util) <= 100 * GIB - 9 * GIB  # what vLLM's check saw
    stored = json.loads((tmp_path / "state" / "calibration.json").read_text())["entries"]
    ((row,),) = stored.values()
    assert row["start_id"] == first["start_id"] and row["precheck_bytes"] == 9 * GIB


def planned_chain_with_store(plan: Plan, tmp_path: Path) -> Any:
    from entrypoint.inputs.gather import Reading, chained
    from entrypoint.inputs.measured import read_calibration

    return chained(plan, Reading(offline=True, retries=0), read_calibration(tmp_path / "state"))
