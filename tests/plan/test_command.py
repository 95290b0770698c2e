from __future__ import annotations

import json
import shlex
from pathlib import Path

from entrypoint.plan.command import build_command
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import resolve
from tests.conftest import PROFILES

CATALOG = Catalog([PROFILES])


def argv_for(env: dict[str, str], model: str = "/models/m") -> list[str]:
    return build_command(resolve(CATALOG, env, {}), model, env).argv


def test_argv_is_the_engine_command_then_settings_then_extra_args() -> None:
    argv = argv_for({"PROFILE": "axe-strada-28b-nvfp4a16", "VARIANT": "mtp", "VLLM_EXTRA_ARGS": "--seed 7"})
    assert argv[:3] == ["vllm", "serve", "/models/m"]
    spec = json.loads(argv[argv.index("--speculative-config") + 1])
    assert spec == {"method": "mtp", "num_speculative_tokens": 3}
    assert argv[-2:] == ["--seed", "7"]
    assert "--quantization" not in argv


def test_booleans_map_to_vllm_flag_pairs() -> None:
    text_only = argv_for({"PROFILE": "axe-strada-28b-nvfp4a16", "VARIANT": "text-only"})
    multimodal = argv_for({"PROFILE": "axe-strada-28b-nvfp4a16", "VARIANT": "multimodal"})
    assert "--language-model-only" in text_only
    assert "--no-language-model-only" in multimodal


def test_engine_command_placeholder_is_replaced() -> None:
    argv = argv_for({"ENGINE_COMMAND": "python -m vllm.entrypoints.openai.api_server --model {model}"})
    assert argv[:5] == ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/m"]


def test_api_key_goes_to_the_environment_never_argv() -> None:
    env = {"API_KEY": "s3cret-key"}
    command = build_command(resolve(CATALOG, env, {}), "/m", env)
    assert not any("s3cret" in word for word in command.argv)
    assert command.env(env)["VLLM_API_KEY"] == "s3cret-key"
    assert command.shown_env()["VLLM_API_KEY"] == "<redacted>"


def test_empty_own_variables_are_removed_from_the_engine_environment() -> None:
    env = {"HF_TOKEN": "", "MAX_MODEL_LEN": "", "KEEP": ""}
    command = build_command(resolve(CATALOG, env, {}), "/m", env)
    engine_env = command.env(env)
    assert "HF_TOKEN" not in engine_env and "MAX_MODEL_LEN" not in engine_env and engine_env["KEEP"] == ""


def test_hub_repo_model_carries_its_revision() -> None:
    env = {"MODEL": "someone/else", "MODEL_REVISION": "v2"}
    argv = build_command(resolve(CATALOG, env, {}), "someone/else", env).argv
    assert argv[argv.index("--revision") + 1] == "v2"


def test_profile_env_reaches_the_engine(tmp_path: Path) -> None:
    text = (PROFILES / "qwen3-4b-nvfp4.yaml").read_text() + "env:\n  VLLM_LOGGING_LEVEL: DEBUG\n"
    (tmp_path / "x.yaml").write_text(text)
    env = {"PROFILE": "x"}
    command = build_command(resolve(Catalog([tmp_path]), env, {}), "/m", env)
    assert command.env({})["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_shell_form_round_trips() -> None:
    env = {"SERVED_MODEL_NAME": "name with space"}
    command = build_command(resolve(CATALOG, env, {}), "/m", env)
    assert shlex.split(command.shell()) == command.argv
