"""Every user-caused failure: one line naming the file, field or variable and the
fix, its own exit code, no traceback, nothing exec'd. Runs the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ExitCode
from tests.conftest import PROFILES, clean_env, run_cli
from tests.support.configs import seed_config, write_checkpoint

BASE = (PROFILES / "qwen3-4b-nvfp4.yaml").read_text()
AXE = (PROFILES / "axe-strada-28b-nvfp4a16.yaml").read_text()
MIN = "repo: a/b\nserved_model_name: m\nquantization: none\nhardware: {min_memory_gb: 1}\n"

E = ExitCode
# (id, argv, env, profile text written as PROFILES_DIR/bad.yaml or None, exit code, substrings)
CASES: list[tuple[str, list[str], dict[str, str], str | bytes | None, ExitCode, list[str]]] = [
    (
        "model-typo",
        ["plan"],
        {"MODEL": "qwen3-4b"},
        None,
        E.UNKNOWN_PROFILE,
        ["MODEL", "did you mean 'qwen3-4b-nvfp4'"],
    ),
    (
        "profile-typo-env",
        ["plan"],
        {"PROFILE": "nex-mini"},
        None,
        E.UNKNOWN_PROFILE,
        ["PROFILE", "choose one of"],
    ),
    ("profile-typo-flag", ["plan", "--profile", "ax31"], {}, None, E.UNKNOWN_PROFILE, ["--profile"]),
    (
        "variant-typo",
        ["plan"],
        {"PROFILE": "axe-strada-28b-nvfp4a16", "VARIANT": "mpt"},
        None,
        E.UNKNOWN_PROFILE,
        ["VARIANT", "did you mean 'mtp'"],
    ),
    (
        "variant-flag-unknown",
        ["plan", "--variant", "nope"],
        {},
        None,
        E.UNKNOWN_PROFILE,
        ["--variant", "tools"],
    ),
    ("model-not-a-name", ["plan"], {"MODEL": "not a model!"}, None, E.UNKNOWN_PROFILE, ["MODEL"]),
    (
        "variant-without-profile",
        ["plan"],
        {"MODEL": "a/b", "VARIANT": "tools"},
        None,
        E.CONFLICT,
        ["VARIANT"],
    ),
    (
        "yaml-syntax",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: [oops\n",
        E.PROFILE_SYNTAX,
        ["bad.yaml", "line"],
    ),
    (
        "yaml-not-mapping",
        ["plan"],
        {"PROFILE": "bad"},
        "- a\n- b\n",
        E.PROFILE_SYNTAX,
        ["bad.yaml", "mapping"],
    ),
    (
        "unknown-top-field",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "modle: x\n",
        E.PROFILE_INVALID,
        ["field 'modle'", "remove it"],
    ),
    (
        "unknown-vllm-field",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {max_len: 5}\n",
        E.PROFILE_INVALID,
        ["vllm.max_len"],
    ),
    (
        "wrong-type",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {max_model_len: lots}\n",
        E.PROFILE_INVALID,
        ["vllm.max_model_len", "'lots'"],
    ),
    (
        "util-zero",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {gpu_memory_utilization: 0}\n",
        E.PROFILE_INVALID,
        ["gpu_memory_utilization", "greater than 0"],
    ),
    (
        "util-above-one",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {gpu_memory_utilization: 1.2}\n",
        E.PROFILE_INVALID,
        ["less than or equal to 1"],
    ),
    (
        "negative-len",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {max_model_len: -5}\n",
        E.PROFILE_INVALID,
        ["vllm.max_model_len"],
    ),
    (
        "missing-repo",
        ["plan"],
        {"PROFILE": "bad"},
        MIN.replace("repo: a/b\n", ""),
        E.PROFILE_INVALID,
        ["field 'repo'", "add this field"],
    ),
    (
        "quantization-fp4",
        ["plan"],
        {"PROFILE": "bad"},
        MIN.replace("quantization: none", "quantization: fp4"),
        E.PROFILE_INVALID,
        ["quantization", "use one of"],
    ),
    (
        "kv-dtype-typo",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {kv_cache_dtype: fp9}\n",
        E.PROFILE_INVALID,
        ["kv_cache_dtype"],
    ),
    (
        "deprecated-mtp-method",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {speculative_config: {method: qwen3_next_mtp, num_speculative_tokens: 3}}\n",
        E.PROFILE_INVALID,
        ["speculative_config.method", "'mtp'"],
    ),
    (
        "default-variant-missing",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "default_variant: fast\n",
        E.PROFILE_INVALID,
        ["default_variant 'fast'"],
    ),
    (
        "auto-tool-without-parser",
        ["plan"],
        {"PROFILE": "bad"},
        MIN + "vllm: {enable_auto_tool_choice: true}\n",
        E.CONFLICT,
        ["tool_call_parser"],
    ),
    (
        "env-len-text",
        ["plan"],
        {"MAX_MODEL_LEN": "abc"},
        None,
        E.SETTING_INVALID,
        ["MAX_MODEL_LEN", "'abc'", "; use a whole number of tokens, e.g. 32768"],
    ),
    (
        "env-util-text",
        ["plan"],
        {"GPU_MEMORY_UTILIZATION": "most"},
        None,
        E.SETTING_INVALID,
        ["GPU_MEMORY_UTILIZATION", "use a fraction above 0 and at most 1, e.g. 0.85"],
    ),
    (
        "profiles-dir-missing",
        ["profiles"],
        {"PROFILES_DIR": "/nonexistent"},
        None,
        E.SETTING_INVALID,
        ["PROFILES_DIR: /nonexistent does not exist", "point PROFILES_DIR"],
    ),
    (
        "variant-not-in-profile",
        ["plan"],
        {"PROFILE": "nex-n2-mini-nvfp4", "VARIANT": "mtp"},
        None,
        E.UNKNOWN_PROFILE,
        ["VARIANT: profile 'nex-n2-mini-nvfp4' has no variant 'mtp'; choose one of: text-only, tools"],
    ),
    (
        "hardware-typo",
        ["plan"],
        {"HARDWARE": "gb01"},
        None,
        E.SETTING_INVALID,
        ["HARDWARE", "did you mean 'gb10'"],
    ),
    (
        "reserve-negative",
        ["plan"],
        {"MEMORY_RESERVE_GB": "-1"},
        None,
        E.SETTING_INVALID,
        ["MEMORY_RESERVE_GB"],
    ),
    (
        "env-util-high",
        ["plan"],
        {"GPU_MEMORY_UTILIZATION": "1.5"},
        None,
        E.SETTING_INVALID,
        ["GPU_MEMORY_UTILIZATION"],
    ),
    (
        "env-util-zero",
        ["plan"],
        {"GPU_MEMORY_UTILIZATION": "0"},
        None,
        E.SETTING_INVALID,
        ["GPU_MEMORY_UTILIZATION"],
    ),
    ("env-seqs-negative", ["plan"], {"MAX_NUM_SEQS": "-1"}, None, E.SETTING_INVALID, ["MAX_NUM_SEQS"]),
    ("env-port-range", ["plan"], {"PORT": "70000"}, None, E.SETTING_INVALID, ["PORT", "1 to 65535"]),
    ("env-port-text", ["plan"], {"PORT": "http"}, None, E.SETTING_INVALID, ["PORT"]),
    (
        "env-kv-dtype",
        ["plan"],
        {"KV_CACHE_DTYPE": "fp4"},
        None,
        E.SETTING_INVALID,
        ["KV_CACHE_DTYPE", "use one of"],
    ),
    (
        "env-extra-quote",
        ["plan"],
        {"VLLM_EXTRA_ARGS": "--x 'open"},
        None,
        E.SETTING_INVALID,
        ["VLLM_EXTRA_ARGS", "quotes"],
    ),
    (
        "env-engine-no-placeholder",
        ["plan"],
        {"ENGINE_COMMAND": "vllm serve"},
        None,
        E.SETTING_INVALID,
        ["ENGINE_COMMAND", "{model}"],
    ),
    ("flag-len-zero", ["plan", "--max-model-len", "0"], {}, None, E.SETTING_INVALID, ["--max-model-len"]),
    (
        "profile-binary",
        ["plan"],
        {"PROFILE": "bad"},
        b"\x89PNG\r\n\x1a\n\xff\xfe",
        E.PROFILE_SYNTAX,
        ["bad.yaml", "UTF-8"],
    ),
    (
        "reserve-inf",
        ["plan"],
        {"MEMORY_RESERVE_GB": "inf"},
        None,
        E.SETTING_INVALID,
        ["MEMORY_RESERVE_GB", "finite"],
    ),
    (
        "reserve-huge",
        ["plan"],
        {"MEMORY_RESERVE_GB": "1e300"},
        None,
        E.SETTING_INVALID,
        ["MEMORY_RESERVE_GB"],
    ),
    (
        "progress-tiny",
        ["plan"],
        {"PROGRESS_INTERVAL": "1e-300"},
        None,
        E.SETTING_INVALID,
        ["PROGRESS_INTERVAL"],
    ),
    (
        "len-huge",
        ["plan"],
        {"MAX_MODEL_LEN": "9" * 21},
        None,
        E.SETTING_INVALID,
        ["MAX_MODEL_LEN", "16777216"],
    ),
    ("plan-model-a-file", ["plan"], {"MODEL": "/etc/passwd"}, None, E.MODEL_UNAVAILABLE, ["/etc/passwd"]),
    (
        "plan-model-name-too-long",
        ["plan"],
        {"MODEL": "/tmp/" + "a" * 300},
        None,
        E.MODEL_UNAVAILABLE,
        ["model /tmp/aaa", "255 characters"],
    ),
    ("model-name-too-long", ["plan"], {"MODEL": "a" * 300}, None, E.UNKNOWN_PROFILE, ["MODEL"]),
    ("repo-name-too-long", ["plan"], {"MODEL": "o/" + "a" * 300}, None, E.UNKNOWN_PROFILE, ["MODEL"]),
    (
        "profile-with-bad-model",
        ["plan"],
        {"PROFILE": "qwen3-4b-nvfp4", "MODEL": "no such"},
        None,
        E.SETTING_INVALID,
        ["MODEL"],
    ),
]


@pytest.mark.parametrize(
    ("case", "argv", "env", "profile", "code", "needles"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_with_its_exit_code(
    tmp_path: Path,
    case: str,
    argv: list[str],
    env: dict[str, str],
    profile: str | bytes | None,
    code: ExitCode,
    needles: list[str],
) -> None:
    extra = dict(env)
    if profile is not None:
        bad = tmp_path / "bad.yaml"
        bad.write_bytes(profile) if isinstance(profile, bytes) else bad.write_text(profile)
        extra["PROFILES_DIR"] = f"{PROFILES}:{tmp_path}"
    result = run_cli(argv, clean_env(STATE_DIR=str(tmp_path / "state"), **extra))
    assert result.code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spark-serve: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for needle in needles:
        assert needle in lines[0]


def _launch_env(tmp_path: Path, **env: str) -> dict[str, str]:
    marker = tmp_path / "exec-happened"
    defaults = {
        "STATE_DIR": str(tmp_path / "state"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "ENGINE_COMMAND": f"sh -c 'touch {marker}' {{model}}",
    }
    return clean_env(**{**defaults, **env})


LAUNCH_CASES = [
    ("local-path-missing", lambda d: {"MODEL": str(d / "absent")}, E.MODEL_UNAVAILABLE, ["does not exist"]),
    (
        "offline-not-cached",
        lambda d: {},
        E.SNAPSHOT_INCOMPLETE,
        ["HF_HOME", "DrQianXu/Qwen3-4B-nvfp4-Compressible", "HF_HUB_OFFLINE"],
    ),
    (
        "format-mismatch",
        lambda d: {"PROFILE": "qwen3-4b-nvfp4", "MODEL": str(d / "llama"), "MAX_MODEL_LEN": "64"},
        E.CHECKPOINT_MISMATCH,
        ["unquantized", "compressed-tensors", "quantization"],
    ),
    (
        "mtp-without-layers",
        lambda d: {"PROFILE": "axe-q35", "VARIANT": "mtp", "MODEL": str(d / "q35"), "MAX_MODEL_LEN": "64"},
        E.CHECKPOINT_MISMATCH,
        ["MTP"],
    ),
    (
        "hybrid-floor",
        lambda d: {
            "PROFILE": "axe-q35",
            "MODEL": str(d / "q35"),
            "MAX_MODEL_LEN": "64",
            "MAX_NUM_BATCHED_TOKENS": "1000",
        },
        E.CONFLICT,
        ["MAX_NUM_BATCHED_TOKENS", "2096"],
    ),
    (
        "context-too-long",
        lambda d: {"MODEL": str(d / "llama"), "MAX_MODEL_LEN": "99999"},
        E.CONFLICT,
        ["MAX_MODEL_LEN", "32768"],
    ),
    (
        "engine-missing",
        lambda d: {"MODEL": str(d / "llama"), "ENGINE_COMMAND": "no-such-vllm {model}"},
        E.ENGINE_NOT_FOUND,
        ["ENGINE_COMMAND", "no-such-vllm"],
    ),
    (
        "state-unwritable",
        lambda d: {"MODEL": str(d / "llama"), "STATE_DIR": str(d / "llama" / "config.json")},
        E.STATE_UNWRITABLE,
        ["STATE_DIR"],
    ),
]


@pytest.mark.parametrize(
    ("case", "make_env", "code", "needles"), LAUNCH_CASES, ids=[c[0] for c in LAUNCH_CASES]
)
def test_launch_refuses_before_exec(
    tmp_path: Path, case: str, make_env, code: ExitCode, needles: list[str]
) -> None:  # type: ignore[no-untyped-def]
    write_checkpoint(tmp_path / "llama", seed_config("llama"))
    ct = {
        "quant_method": "compressed-tensors",
        "format": "nvfp4-pack-quantized",
        "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
    }
    write_checkpoint(tmp_path / "q35", seed_config("qwen3_5") | {"quantization_config": ct})
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "axe-q35.yaml").write_text(AXE)
    env = _launch_env(tmp_path, PROFILES_DIR=f"{PROFILES}:{profiles}", **make_env(tmp_path))
    result = run_cli(["launch"], env)
    assert result.code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("spark-serve: error: ") and "Traceback" not in result.stderr
    )
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "exec-happened").exists()


def test_exit_codes_are_distinct() -> None:
    codes = [int(c) for c in ExitCode]
    assert len(codes) == len(set(codes))
