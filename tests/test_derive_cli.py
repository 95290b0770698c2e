"""Zero-config through the real CLI and the local Hub: ``plan`` derives a profile
from metadata alone, ``profiles derive`` pins it, bad repos are refused in one
line before any weight byte."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from entrypoint.errors import ExitCode
from entrypoint.plan.profile import Profile
from tests.conftest import run_cli
from tests.support.configs import seed_config
from tests.support.downloads import hub_env
from tests.support.hub import Hub

REPO_ID = "test/Tiny-NVFP4"


def weight_bytes_sent(hub: Hub, checkpoint: Path) -> dict[str, int]:
    """Bytes of each shard sent beyond its header: 0 means no weight byte left the Hub."""
    sent = {}
    for shard in checkpoint.glob("*.safetensors"):
        header = struct.unpack("<Q", shard.read_bytes()[:8])[0] + 8
        sent[shard.name] = hub.bytes_sent[shard.name] - header * hub.range_gets[shard.name] // 2
    return sent


@pytest.fixture
def tiny(checkpoint_factory: Callable[[str], Path]) -> Path:
    return checkpoint_factory("ct-nvfp4")


def test_plan_derives_a_profile_from_metadata_and_fetches_no_weight(tmp_path: Path, tiny: Path) -> None:
    with Hub() as hub:
        hub.add_dir(REPO_ID, tiny)
        env = hub_env(hub.url, tmp_path, MODEL=REPO_ID, HARDWARE="gb10")
        result = run_cli(["plan", "--json"], env)
        text = run_cli(["plan"], env)
        assert hub.gets["model.safetensors"] == 0
        assert weight_bytes_sent(hub, tiny) == {"model.safetensors": 0}
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["profile"] == "tiny-nvfp4" and doc["profile_file"] is None
    assert doc["derived"]["family"] == "llama" and doc["derived"]["for_hardware"] == "gb10"
    settings = doc["settings"]
    assert settings["linear_backend"] == {
        "value": "flashinfer_cutlass",
        "source": "checkpoint",
        "origin": "W4A4 NVFP4 on gb10 (configs/hardware.yaml)",
    }
    assert settings["max_model_len"]["value"] == 4096 and settings["max_model_len"]["source"] == "checkpoint"
    assert settings["served_model_name"]["value"] == "Tiny-NVFP4"
    assert "--linear-backend" in doc["argv"] and "--quantization" not in doc["argv"]
    assert "derived from Hub test/Tiny-NVFP4@" in text.stdout and "[checkpoint: " in text.stdout


def test_a_pinned_profile_plans_the_same_argv_and_passes_check(tmp_path: Path, tiny: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    with Hub() as hub:
        hub.add_dir(REPO_ID, tiny)
        env = hub_env(hub.url, tmp_path, HARDWARE="gb10")
        pinned = run_cli(["profiles", "derive", REPO_ID, "--name", "tiny"], env)
        assert pinned.code == 0, pinned.stderr
        (profiles / "tiny.yaml").write_text(pinned.stdout)
        plans = {}
        for variant in ("", "tools"):
            derived = run_cli(["plan", "--json"], {**env, "MODEL": REPO_ID, "VARIANT": variant})
            from_file = run_cli(
                ["plan", "--json"],
                {**env, "PROFILE": "tiny", "PROFILES_DIR": str(profiles), "VARIANT": variant},
            )
            assert derived.code == 0 and from_file.code == 0, derived.stderr + from_file.stderr
            plans[variant] = (json.loads(derived.stdout), json.loads(from_file.stdout))
        assert hub.gets["model.safetensors"] == 0
    profile = Profile.model_validate(yaml.safe_load(pinned.stdout))
    assert profile.repo == REPO_ID and profile.variants["tools"].vllm.tool_call_parser == "llama3_json"
    for variant, (derived_doc, file_doc) in plans.items():
        assert derived_doc["argv"] == file_doc["argv"], variant
        assert file_doc["profile_file"] == str(profiles / "tiny.yaml")
    assert "--enable-auto-tool-choice" in plans["tools"][0]["argv"]
    check = run_cli(["check", "--profiles-dir", str(profiles)], hub_env("http://127.0.0.1:9", tmp_path))
    assert check.code == 0, check.stdout + check.stderr
    assert "ok   tiny [tools]" in check.stdout and "3 passed, 0 failed" in check.stdout


BAD_REPOS: dict[str, tuple[dict[str, bytes], bool, ExitCode, list[str]]] = {
    "not-a-checkpoint": ({"README.md": b"# hello"}, False, ExitCode.CHECKPOINT_UNREADABLE, ["config.json"]),
    "malformed-json": ({"config.json": b'{"model_type": '}, False, ExitCode.CHECKPOINT_UNREADABLE, ["JSON"]),
    "unsupported-architecture": (
        {"config.json": json.dumps({"architectures": ["NovelForCausalLM"], "model_type": "novel"}).encode()},
        False,
        ExitCode.ARCHITECTURE_UNSUPPORTED,
        ["NovelForCausalLM", "vLLM 0.32.0"],
    ),
    "gated-without-token": (
        {"config.json": json.dumps(seed_config("llama")).encode()},
        True,
        ExitCode.HUB_AUTH,
        ["HF_TOKEN"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_REPOS))
def test_bad_repos_are_refused_in_one_line_before_any_weight_byte(tmp_path: Path, case: str) -> None:
    files, gated, code, needles = BAD_REPOS[case]
    marker = tmp_path / "exec-happened"
    with Hub() as hub:
        hub.add_repo("test/bad", {**files, "model.safetensors": b"\0" * 4096}, gated=gated)
        env = hub_env(hub.url, tmp_path, MODEL="test/bad", ENGINE_COMMAND=f"sh -c 'touch {marker}' {{model}}")
        result = run_cli(["launch"], env)
        # never fetched; at most the 8-byte length of its (here unreadable) safetensors header
        assert hub.gets["model.safetensors"] == 0 and hub.bytes_sent["model.safetensors"] <= 8
    assert result.code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spark-serve: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert not marker.exists()
