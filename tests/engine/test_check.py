"""``spark-serve check`` against the installed vLLM 0.32.0's own parser and registries."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import PROFILES, clean_env, run_cli

BASE = (PROFILES / "qwen3-4b-nvfp4.yaml").read_text()


def test_every_seed_profile_and_variant_passes() -> None:
    result = run_cli(["check"], clean_env(), timeout=300)
    assert result.code == 0, result.stdout + result.stderr
    assert "vLLM 0.32.0: 16 passed, 0 failed" in result.stdout
    assert "ok   families table (configs/families.yaml)" in result.stdout


def test_planted_bad_profiles_fail_with_every_problem_listed(tmp_path: Path) -> None:
    (tmp_path / "bad-tools.yaml").write_text(
        BASE.replace(
            "  shutdown_timeout: 30\n",
            "  shutdown_timeout: 30\n  enable_auto_tool_choice: true\n  tool_call_parser: not_a_parser\n"
            "  extra_args: ['--no-such-flag']\n",
        )
    )
    (tmp_path / "bad-env.yaml").write_text(
        BASE.replace("reasoning_parser: qwen3", "reasoning_parser: qwen9")
        + "env:\n  VLLM_NVFP4_GEMM_BACKEND: cutlass\n"
    )
    (tmp_path / "broken.yaml").write_text("repo: [\n")
    result = run_cli(["check"], clean_env(PROFILES_DIR=f"{PROFILES}:{tmp_path}"), timeout=300)
    out = result.stdout
    assert result.code == 1, out + result.stderr
    assert "FAIL bad-tools" in out and "--no-such-flag" in out
    assert "FAIL bad-env" in out
    assert "reasoning_parser 'qwen9' is not registered" in out
    assert "VLLM_NVFP4_GEMM_BACKEND is not a variable vLLM 0.32.0 reads" in out
    assert "FAIL broken" in out and "broken.yaml" in out
    assert "16 passed" in out


def test_tool_parser_name_is_checked_against_the_registry(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        BASE.replace(
            "  shutdown_timeout: 30\n",
            "  shutdown_timeout: 30\n  enable_auto_tool_choice: true\n  tool_call_parser: hermez\n",
        )
    )
    result = run_cli(["check"], clean_env(PROFILES_DIR=str(tmp_path)), timeout=300)
    assert result.code == 1
    assert "tool_call_parser 'hermez' is not registered" in result.stdout


def test_the_families_table_names_only_parsers_the_installed_vllm_registers() -> None:
    from entrypoint.engine.check import check_families, load_vllm_surface
    from entrypoint.plan.families import Family, load_families

    surface = load_vllm_surface()
    table = load_families()
    assert table.parser_names() and check_families(table, surface) == []
    assert {"qwen3", "qwen3_coder", "llama3_json", "openai"} <= {n for _, _, n in table.parser_names()}
    planted = table.model_copy(
        update={"families": {**table.families, "x": Family(model_types=["x"], tool_call_parser="hermez")}}
    )
    assert check_families(planted, surface) == [
        "families.x.tool_call_parser: tool parser 'hermez' is not registered in vLLM 0.32.0"
    ]
