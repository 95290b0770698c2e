"""One chain per launch: the real ``spark-serve launch`` resolves once and reads
the Hub's metadata once, whether a profile names the model or one is derived."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_env
from tests.support.downloads import hub_env
from tests.support.hub import Hub

# The launcher in a fresh interpreter, counting resolve() (each ends in validate())
# and Hub metadata reads, with exec replaced by printing the counts.
COUNTING = """
import json, sys
import entrypoint.inputs.gather as gather
import entrypoint.launch.run as run
import entrypoint.plan.resolve as resolve
counts = {"resolve": 0, "hub_meta": 0}
def count(name, real):
    def wrapped(*args, **kwargs):
        counts[name] += 1
        return real(*args, **kwargs)
    return wrapped
resolve.validate = count("resolve", resolve.validate)
gather.hub_meta = count("hub_meta", gather.hub_meta)
def execvpe(file, argv, env):
    print("COUNTS=" + json.dumps(counts))
    sys.exit(0)
run.launch.__defaults__ = (execvpe, None)
from entrypoint.cli import main
sys.exit(main(["launch"]))
"""


def counted_launch(env: dict[str, str]) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", COUNTING], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("COUNTS=")), None)
    assert done.returncode == 0 and line, done.stderr[-3000:]
    return dict(json.loads(line.removeprefix("COUNTS=")))


@pytest.mark.parametrize("named", [True, False], ids=["profile", "derived"])
def test_a_local_checkpoint_is_resolved_once(
    named: bool, checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    extra = {"PROFILE": "axe-strada-28b-nvfp4a16"} if named else {}
    fmt = "ct-nvfp4a16" if named else "bf16"
    env = clean_env(
        MODEL=str(checkpoint_factory(fmt)),
        STATE_DIR=str(tmp_path / "state"),
        ENGINE_COMMAND="true {model}",
        HF_HUB_OFFLINE="1",
        MAX_MODEL_LEN="512",
        **extra,
    )
    assert counted_launch(env) == {"resolve": 1, "hub_meta": 0}
    state = json.loads((tmp_path / "state" / "launcher.json").read_text())
    assert state["phase"] == "starting" and bool(state["derived_from"]) is not named


def test_a_hub_checkpoint_no_profile_names_is_read_and_resolved_once(
    checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    with Hub() as hub:
        hub.add_dir("test/Tiny-bf16", checkpoint_factory("bf16"))
        env = hub_env(hub.url, tmp_path, MODEL="test/Tiny-bf16", ENGINE_COMMAND="true {model}")
        assert counted_launch(env) == {"resolve": 1, "hub_meta": 1}
    state = json.loads((tmp_path / "state" / "launcher.json").read_text())
    assert state["phase"] == "starting" and state["derived_from"].startswith("Hub test/Tiny-bf16@")
