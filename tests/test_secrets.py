"""No secret is ever shown: a canary key and token, given in every spelling vLLM
accepts, never appear in what ``plan`` (text, JSON, Helm values), ``doctor`` or
the launcher write; secret flags in the extra arguments are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.errors import ExitCode
from entrypoint.plan.redact import SECRET_FLAGS, secret_flag, shown_argv
from tests.conftest import clean_env, run_cli

CANARY = "sk-canary-7d41a2"
TOKEN = "hf_canary9b2c"
SPELLINGS = [
    f"--api-key {CANARY}",
    f"--api_key {CANARY}",
    f"--api-key={CANARY}",
    f"--api_key={CANARY}",
    f"--api-k {CANARY}",
    f"--hf-token {CANARY}",
    f"--hf_token={CANARY}",
]
BASE = {"HF_HUB_OFFLINE": "1", "HARDWARE": "gb10"}


def test_the_secret_flags_are_vllms_own_sensitive_fields() -> None:
    from vllm.entrypoints.serve.utils import api_utils

    fields = {"--" + f.replace("_", "-") for f in api_utils._SENSITIVE_ARG_FIELDS}
    assert set(SECRET_FLAGS) == fields


def test_every_spelling_vllm_accepts_is_recognised_and_its_value_hidden() -> None:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    parser.add_argument("--api-key", action="append")
    parser.add_argument("--api-server-count", type=int)
    parser.add_argument("--hf-token")
    for spelling in SPELLINGS:
        words = spelling.split()
        parsed = parser.parse_args(words)
        assert CANARY in (parsed.api_key or []) + [parsed.hf_token], spelling  # vLLM takes it
        assert secret_flag(words[0])
        assert CANARY not in " ".join(shown_argv(["vllm", "serve", "m", *words, "--port", "1"]))
    assert shown_argv(["--hf-token", "--port", "1"]) == ["--hf-token", "--port", "1"]
    assert not secret_flag("--api-server-count") and not secret_flag("--port")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_secret_flag_in_the_extra_arguments_is_refused_and_never_shown(
    spelling: str, tmp_path: Path
) -> None:
    env = clean_env(STATE_DIR=str(tmp_path), VLLM_EXTRA_ARGS=spelling, **BASE)
    for args in (["plan"], ["plan", "--json"], ["plan", "--format", "helm-values"], ["launch"]):
        result = run_cli(args, env)
        assert result.code == ExitCode.SECRET_EXPOSED, (args, result.stderr)
        assert CANARY not in result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "VLLM_EXTRA_ARGS carries" in result.stderr
    assert not any(CANARY in p.read_text() for p in tmp_path.rglob("*") if p.is_file())


def test_api_key_and_hf_token_never_appear_in_plan_doctor_or_helm_values(tmp_path: Path) -> None:
    watermark = json.dumps({"key": CANARY})
    env = clean_env(
        STATE_DIR=str(tmp_path),
        API_KEY=CANARY,
        HF_TOKEN=TOKEN,
        VLLM_EXTRA_ARGS=f"--watermark-config '{watermark}'",
    )
    env.update(BASE)
    outputs = []
    for args in (["plan"], ["plan", "--json"], ["doctor", "--json"], ["doctor"]):
        result = run_cli(args, env)
        outputs.append(result.stdout + result.stderr)
    helm = run_cli(["plan", "--format", "helm-values"], {**env, "VLLM_EXTRA_ARGS": ""})
    assert helm.code == 0, helm.stderr
    outputs.append(helm.stdout)
    assert all(CANARY not in text and TOKEN not in text for text in outputs)
    doc = json.loads(run_cli(["plan", "--json"], env).stdout)
    assert "entrypoint.engine.keyguard.KeyGuard" in doc["argv"]  # the key on every route
    assert doc["env"]["VLLM_API_KEY"] == "<redacted>" and "api-key" in helm.stdout
    assert "--watermark-config" in doc["argv"] and "<redacted>" in doc["command"]


def test_a_key_from_a_file_is_read_and_a_missing_one_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "api_key"
    key.write_text(CANARY + "\n")
    env = clean_env(STATE_DIR=str(tmp_path / "s"), API_KEY_FILE=str(key), **BASE)
    doc = json.loads(run_cli(["plan", "--json"], env).stdout)
    assert (
        doc["settings"]["api_key"]["value"] == "<redacted>"
        and "entrypoint.engine.keyguard.KeyGuard" in doc["argv"]
    )
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "api_key").write_text(CANARY)
    doc = json.loads(run_cli(["plan", "--json"], clean_env(SECRETS_DIR=str(folder), **BASE)).stdout)
    assert "entrypoint.engine.keyguard.KeyGuard" in doc["argv"]
    missing = run_cli(["plan"], {**env, "API_KEY_FILE": str(tmp_path / "none")})
    assert missing.code == ExitCode.SECRET_UNREADABLE and "Traceback" not in missing.stderr
    assert f"API_KEY_FILE={tmp_path / 'none'}: " in missing.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert run_cli(["plan"], {**env, "API_KEY_FILE": str(empty)}).code == ExitCode.SECRET_UNREADABLE
