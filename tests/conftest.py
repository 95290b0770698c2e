"""Shared fixtures: the real CLI in a subprocess, generated checkpoints, the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from entrypoint.plan.options import OPTIONS
from server.settings import SIDECAR_OPTIONS

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "configs" / "profiles"

# Variables that would leak a developer's settings into the launcher under test.
_OWN_VARS = frozenset({o.env for o in (*OPTIONS, *SIDECAR_OPTIONS) if o.env} | {"VLLM_API_KEY"})


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OWN_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: Mapping[str, str] | None = None, timeout: float = 120) -> CliResult:
    """Run the real ``spark-serve`` CLI in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint", *args],
        env=dict(env) if env is not None else clean_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    def call(*args: str, **env: str) -> CliResult:
        return run_cli(list(args), clean_env(STATE_DIR=str(tmp_path / "state"), **env))

    return call


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Tiny checkpoints by format, each made once per run: the parallel test workers
    share one folder (above each worker's own), the first to need a format makes it."""
    from filelock import FileLock

    from tests.support.checkpoints import FORMATS

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "checkpoints"
    root.mkdir(exist_ok=True)

    def make(fmt: str) -> Path:
        done = root / f"{fmt}.done"
        with FileLock(str(root / f"{fmt}.lock")):
            if not done.exists():
                FORMATS[fmt](root / fmt)
                done.touch()
        return root / fmt

    yield make


# Each test module runs on one worker (`--dist loadfile`: its module-scoped engine, Hub
# or Docker stack is set up once), each worker starting with two modules and taking the
# next one free. The longest first (`--no-loadscope-reorder` keeps this order), the image
# tests' worker getting a short one after them, so that no worker is left with a long
# module at the end.
FIRST = (
    "tests/test_stack.py",
    "tests/test_engine_derived.py",
    "tests/test_engine_download.py",
    "tests/cluster/test_two_hosts.py",
    "tests/test_engine.py",
    "tests/test_models_engine.py",
    "tests/test_sidecar.py",
    "tests/bench/test_bench_engine.py",
    "tests/test_container.py",
    "tests/test_heal_engine.py",
    "tests/test_long_prefill.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(FIRST)))
