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
    from tests.support.checkpoints import FORMATS

    root = tmp_path_factory.mktemp("checkpoints")
    made: dict[str, Path] = {}

    def make(fmt: str) -> Path:
        if fmt not in made:
            made[fmt] = FORMATS[fmt](root / fmt)
        return made[fmt]

    yield make
