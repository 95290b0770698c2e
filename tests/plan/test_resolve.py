from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConflictError, SettingError
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import DEFAULT_PROFILE, resolve
from tests.conftest import PROFILES

CATALOG = Catalog([PROFILES])
AXE = "axe-strada-28b-nvfp4a16"


def test_precedence_default_profile_variant_env_cli() -> None:
    env = {"MAX_NUM_SEQS": "3", "MAX_MODEL_LEN": "1000"}
    plan = resolve(CATALOG, env, {"profile": AXE, "variant": "long-context", "max_model_len": "2000"})
    s = plan.settings
    assert (s["host"].value, s["host"].source) == ("0.0.0.0", "default")
    assert (s["reasoning_parser"].value, s["reasoning_parser"].source) == ("qwen3", "profile")
    assert (s["kv_cache_dtype"].value, s["kv_cache_dtype"].source) == ("fp8", "variant")
    assert (s["max_num_seqs"].value, s["max_num_seqs"].source, s["max_num_seqs"].origin) == (
        3,
        "env",
        "MAX_NUM_SEQS",
    )
    assert (s["max_model_len"].value, s["max_model_len"].source) == (2000, "cli")
    assert s["gpu_memory_utilization"].origin.endswith("variants.long-context.vllm.gpu_memory_utilization")


def test_empty_environment_variable_counts_as_unset() -> None:
    plan = resolve(CATALOG, {"MAX_MODEL_LEN": "", "VARIANT": "", "MODEL": "", "API_KEY": ""}, {})
    assert plan.settings["max_model_len"].source == "profile"
    assert plan.variant is None and plan.profile is not None and plan.profile.name == DEFAULT_PROFILE
    assert plan.value("api_key") is None


def test_model_may_name_a_profile_a_repo_or_a_path(tmp_path: Path) -> None:
    by_name = resolve(CATALOG, {"MODEL": AXE}, {})
    assert by_name.profile is not None and by_name.profile.name == AXE
    by_repo = resolve(CATALOG, {"MODEL": "srswti/axe-strada-28b-nvfp4a16"}, {})
    assert by_repo.profile is not None and by_repo.profile.name == AXE
    other = resolve(CATALOG, {"MODEL": "someone/else"}, {})
    assert other.profile is None and other.model.repo == "someone/else"
    assert other.value("served_model_name") == "someone/else"
    local = resolve(CATALOG, {"MODEL": str(tmp_path)}, {})
    assert local.model.kind == "path" and local.value("served_model_name") == tmp_path.name


def test_profile_with_model_serves_that_checkpoint_with_profile_settings(tmp_path: Path) -> None:
    plan = resolve(CATALOG, {"PROFILE": "qwen3-4b-nvfp4", "MODEL": str(tmp_path)}, {})
    assert plan.model.path == str(tmp_path)
    assert plan.value("served_model_name") == "qwen3-4b"


def test_extra_args_are_split_like_a_shell() -> None:
    plan = resolve(
        CATALOG, {"VLLM_EXTRA_ARGS": "--max-logprobs 5 --chat-template-content-format 'string'"}, {}
    )
    assert plan.value("vllm_extra_args") == [
        "--max-logprobs",
        "5",
        "--chat-template-content-format",
        "string",
    ]


def test_default_variant_applies_when_none_is_asked(tmp_path: Path) -> None:
    text = (PROFILES / f"{AXE}.yaml").read_text() + "default_variant: text-only\n"
    (tmp_path / "x.yaml").write_text(text)
    plan = resolve(Catalog([tmp_path]), {"PROFILE": "x"}, {})
    assert plan.variant == "text-only" and plan.value("language_model_only") is True


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(SettingError) as info:
        resolve(CATALOG, {"MAX_MODEL_LEN": "lots"}, {})
    assert "MAX_MODEL_LEN" in str(info.value)


def test_auto_tool_choice_without_parser_is_a_conflict(tmp_path: Path) -> None:
    text = (
        (PROFILES / "qwen3-4b-nvfp4.yaml")
        .read_text()
        .replace("  shutdown_timeout: 30\n", "  shutdown_timeout: 30\n  enable_auto_tool_choice: true\n")
    )
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(ConflictError, match="tool_call_parser"):
        resolve(Catalog([tmp_path]), {"PROFILE": "x"}, {})


def test_variant_without_profile_is_a_conflict() -> None:
    with pytest.raises(ConflictError, match="VARIANT"):
        resolve(CATALOG, {"MODEL": "someone/else", "VARIANT": "tools"}, {})
