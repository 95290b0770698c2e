"""The data spark-serve ships is found by one rule in the checkout, in an installed
wheel outside it (as in the image), and a missing table says so in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import shipped
from entrypoint.errors import DataMissingError, ExitCode
from entrypoint.plan.hardware import load_table
from tests.conftest import REPO, CliResult, clean_env


def test_the_checkout_finds_its_own_top_level_folders() -> None:
    assert shipped.configs("hardware.yaml").resolve() == REPO / "configs" / "hardware.yaml"
    assert shipped.monitoring("alerts.yml").resolve() == REPO / "monitoring" / "alerts.yml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the image installs (a plain, not editable, `pip install .`)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root),
            ".",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (built,) = root.glob("spark_serve-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    """That wheel installed in a folder of its own, outside the checkout."""
    site = wheel.parent / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "entrypoint", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_an_installed_wheel_outside_the_checkout_plans_and_lists(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import entrypoint; print(entrypoint.__file__)"],
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(installed)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(installed))  # not the checkout's copy
    assert not (installed / "entrypoint" / "data" / "configs").is_symlink()
    profiles = _run(installed, tmp_path, "profiles", "--hardware", "gb10")
    assert profiles.returncode == 0, profiles.stderr
    assert "qwen3-4b-nvfp4" in profiles.stdout
    plan = _run(installed, tmp_path, "plan", "--json", "--hardware", "gb10", "--profile", "ax-3.1-nvfp4")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["hardware"]["key"] == "gb10"
    helm = _run(installed, tmp_path, "plan", "--format", "helm-values", "--hardware", "gb10")
    assert helm.returncode == 0 and "PrometheusRule" in helm.stdout, helm.stderr


def test_a_missing_table_names_itself_and_the_fix(installed: Path, tmp_path: Path) -> None:
    (installed / "entrypoint" / "data" / "configs" / "hardware.yaml").rename(tmp_path / "hardware.yaml")
    try:
        result = _run(installed, tmp_path, "plan", "--hardware", "gb10")
    finally:
        (tmp_path / "hardware.yaml").rename(installed / "entrypoint" / "data" / "configs" / "hardware.yaml")
    assert result.returncode == ExitCode.DATA_MISSING, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "hardware.yaml: not found (the hardware table shipped with spark-serve)" in line
    assert "reinstall spark-serve" in line and "YAML syntax" not in line


def test_data_missing_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        load_table(tmp_path / "nowhere.yaml")
    assert isinstance(caught.value, DataMissingError) and caught.value.exit_code == 29


def test_the_wheel_carries_every_package_and_the_data(wheel: Path) -> None:
    """A package folder left out of the wheel is a command that fails only in the image."""
    names = zipfile.ZipFile(wheel).namelist()
    shipped_dirs = {Path(name).parent.as_posix() for name in names if name.endswith(".py")}
    folders = {
        init.parent.relative_to(REPO).as_posix()
        for top in ("entrypoint", "server")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert folders <= shipped_dirs, f"left out of the wheel: {sorted(folders - shipped_dirs)}"
    assert "entrypoint/bench/opticks.txt" in names
    for data in ("configs", "monitoring"):
        expected = {p.relative_to(REPO).as_posix() for p in (REPO / data).rglob("*") if p.is_file()}
        assert {f"entrypoint/data/{name}" for name in expected} <= set(names), data


def test_helm_values_without_the_alert_rules_is_one_line(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    result = cli("plan", "--format", "helm-values", "--hardware", "gb10", MONITORING_DIR=str(tmp_path))
    assert result.code == ExitCode.DATA_MISSING, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"{tmp_path}/alerts.yml: not found (the alert rules shipped with spark-serve)" in line
