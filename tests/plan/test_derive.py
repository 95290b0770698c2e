"""Derivation of a profile from checkpoint metadata (pure), and its YAML."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from entrypoint.errors import ArchitectureUnsupportedError, CheckpointUnreadableError
from entrypoint.meta import CheckpointMeta, WeightSizes
from entrypoint.plan.derive import ArchSupport, Derived, derive, profile_name
from entrypoint.plan.families import load_families
from entrypoint.plan.hardware import GB, load_table, named_device
from entrypoint.plan.profile import Profile
from entrypoint.show.pin import render
from tests.support.configs import seed_config

TABLE = load_table()
FAMILIES = load_families()
SUPPORT = ArchSupport(
    "0.32.0",
    frozenset({"LlamaForCausalLM", "Qwen3ForCausalLM", "Qwen3_5MoeForConditionalGeneration", "X"}),
)
NVFP4_FP8_KV = {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "group_size": 16}}
CT_W4A16 = {
    "quant_method": "compressed-tensors",
    "format": "nvfp4-pack-quantized",
    "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
}
THINKING = "{% for m in messages %}{{ m.content }}{% endfor %}<think>\n"


def meta(
    config: dict[str, Any],
    hf_quant: dict[str, Any] | None = None,
    *,
    weights: WeightSizes | None = None,
    template: str | None = "{{ messages }}",
    tokens: tuple[str, ...] | None = None,
) -> CheckpointMeta:
    return CheckpointMeta(
        config,
        hf_quant,
        weights or WeightSizes(2 * GB, source="test"),
        "Hub test/model@0123456789ab",
        files=("config.json",),
        commit="0123456789abcdef",
        chat_template=template,
        special_tokens=tokens,
    )


def run(m: CheckpointMeta, device: str = "gb10", repo: str | None = "test/Model-NVFP4") -> Derived:
    return derive(
        m,
        model=repo or "/models/My Model",
        repo=repo,
        revision="main",
        device=named_device(TABLE, device, "test"),
        table=FAMILIES,
        support=SUPPORT,
    )


def test_a_hybrid_moe_vision_mtp_nvfp4_checkpoint_on_a_spark() -> None:
    weights = WeightSizes(20 * GB, vision=GB, mtp=GB // 2, experts=15 * GB, source="t", named=True)
    config = seed_config("qwen3_5_moe", mtp_layers=1)
    got = run(meta(config, NVFP4_FP8_KV, weights=weights))
    vllm = got.profile.vllm
    assert got.profile.quantization == "modelopt-nvfp4" and got.family == "qwen3_5"
    assert vllm.kv_cache_dtype == "fp8" and "kv_cache_quant_algo FP8" in got.reasons["vllm.kv_cache_dtype"]
    assert vllm.linear_backend == vllm.moe_backend == "flashinfer_cutlass"
    assert vllm.max_num_batched_tokens == 8192  # vLLM's default on GB10, above the hybrid floor
    assert got.reasons["vllm.max_num_batched_tokens"].startswith("hybrid: 3 linear-attention layers")
    assert vllm.reasoning_parser == "qwen3" and vllm.trust_remote_code is None
    tools = got.profile.variants["tools"].vllm
    assert tools.enable_auto_tool_choice and tools.tool_call_parser == "qwen3_coder"
    assert got.profile.variants["text-only"].vllm.language_model_only is True
    spec = got.profile.variants["mtp"].vllm.speculative_config
    assert spec is not None and (spec.method, spec.num_speculative_tokens) == ("mtp", 3)
    assert vllm.max_model_len == 32768 and got.profile.served_model_name == "Model-NVFP4"
    assert got.name == "model-nvfp4" and got.profile.default_variant is None


def test_weight_only_llama_on_hopper_forces_no_backend_and_offers_tools() -> None:
    got = run(meta(seed_config("llama") | {"quantization_config": CT_W4A16}), device="h100")
    assert got.profile.quantization == "ct-nvfp4a16"
    assert got.profile.vllm.linear_backend is None and got.profile.vllm.reasoning_parser is None
    assert got.profile.variants["tools"].vllm.tool_call_parser == "llama3_json"
    assert any("weight-only NVFP4" in n for n in got.notes)
    assert any("KV cache dtype auto" in n for n in got.notes) and got.profile.vllm.kv_cache_dtype is None


def test_unquantized_and_other_formats_are_served_and_said_not_nvfp4() -> None:
    plain = run(meta(seed_config("qwen3")))
    assert plain.profile.quantization == "none" and any("not NVFP4: unquantized" in n for n in plain.notes)
    fp8 = run(meta(seed_config("qwen3") | {"quantization_config": {"quant_method": "fp8"}}))
    assert fp8.profile.quantization == "other" and any("not NVFP4: fp8" in n for n in fp8.notes)
    assert plain.profile.vllm.linear_backend is None


def test_mtp_declared_without_mtp_weights_gets_no_variant() -> None:
    weights = WeightSizes(3 * GB, source="t", named=True)
    got = run(meta(seed_config("qwen3_5_moe", mtp_layers=1), weights=weights))
    assert "mtp" not in got.profile.variants
    assert any("no mtp variant" in n and "weights hold none" in n for n in got.notes)
    drafts = run(meta(seed_config("qwen3_5_moe", mtp_layers=1) | {"num_speculative_tokens": 2}))
    spec = drafts.profile.variants["mtp"].vllm.speculative_config
    assert spec is not None and spec.num_speculative_tokens == 2


def test_unknown_family_gets_no_parser_unless_its_template_thinks() -> None:
    config = {"architectures": ["X"], "model_type": "x", "hidden_size": 64, "num_hidden_layers": 2}
    plain = run(meta(config))
    assert plain.family is None and plain.profile.vllm.reasoning_parser is None and not plain.profile.variants
    assert any("model_type x is not a family" in n for n in plain.notes)
    thinking = run(meta(config, template=THINKING))
    assert thinking.profile.vllm.reasoning_parser == "deepseek_r1"
    assert "<think>" in thinking.reasons["vllm.reasoning_parser"]
    untemplated = run(meta(config, template=None))
    assert any("no chat template" in n and "--chat-template" in n for n in untemplated.notes)


def test_a_parser_whose_token_the_tokenizer_lacks_is_not_derived() -> None:
    llama3 = run(meta(seed_config("llama"), tokens=("<|begin_of_text|>", "<|python_tag|>")))
    assert llama3.profile.variants["tools"].vllm.tool_call_parser == "llama3_json"
    other = run(meta(seed_config("llama"), tokens=("<s>", "</s>")))  # a Llama-architecture non-Llama-3
    assert "tools" not in other.profile.variants
    assert any("llama3_json needs <|python_tag|>" in n for n in other.notes)
    config = {"architectures": ["X"], "model_type": "x"}
    unthinking = run(meta(config, template=THINKING, tokens=("<s>",)))
    assert unthinking.profile.vllm.reasoning_parser is None
    assert any("deepseek_r1 needs <think>, </think>" in n for n in unthinking.notes)


def _wide(max_pos: int) -> dict[str, Any]:
    return seed_config("llama") | {
        "num_hidden_layers": 80,
        "num_key_value_heads": 64,
        "num_attention_heads": 64,
        "head_dim": 128,
        "hidden_size": 8192,
        "max_position_embeddings": max_pos,
    }


def test_max_model_len_is_lowered_until_four_sequences_fit() -> None:
    got = run(meta(_wide(131072)))  # 2.6 MB of bf16 KV per token
    length = got.profile.vllm.max_model_len
    assert length is not None and length % 1024 == 0 and 4096 <= length < 131072
    assert "lowered to fit 4 sequences" in got.reasons["vllm.max_model_len"]
    per_sequence = 80 * 2 * 64 * 128 * 2 * length
    assert 4 * per_sequence <= 128 * GB  # four of them fit the Spark
    assert 4 * 80 * 2 * 64 * 128 * 2 * (length + 1024) > 119 * GB - 6.5 * GB  # one more step would not
    short = run(meta(_wide(4096)))
    assert short.profile.vllm.max_model_len == 4096 and "fit gb10" in short.reasons["vllm.max_model_len"]


def test_unsupported_and_unnamed_architectures_are_refused() -> None:
    with pytest.raises(ArchitectureUnsupportedError) as err:
        run(meta({"architectures": ["NovelForCausalLM"], "model_type": "novel"}))
    assert "NovelForCausalLM" in str(err.value) and "vLLM 0.32.0" in str(err.value)
    with pytest.raises(ArchitectureUnsupportedError) as remote:
        run(meta({"architectures": ["NovelForCausalLM"], "auto_map": {"AutoModel": "m.Novel"}}))
    assert remote.value.fix is not None and "trust_remote_code" in remote.value.fix
    with pytest.raises(CheckpointUnreadableError, match="names no architectures"):
        run(meta({"model_type": "llama"}))
    unchecked = derive(
        meta(seed_config("llama")),
        model="test/m",
        repo="test/m",
        revision="main",
        device=named_device(TABLE, "cpu", "test"),
        table=FAMILIES,
        support=None,
    )
    assert any("not checked" in n for n in unchecked.notes)


def test_profile_names_come_from_the_last_part_of_model() -> None:
    assert profile_name("Owner/Qwen3.5-35B_NVFP4") == "qwen3.5-35b_nvfp4"
    assert profile_name("/models/My Model/") == "my-model"


def test_the_yaml_round_trips_through_the_schema_with_a_reason_per_value() -> None:
    weights = WeightSizes(20 * GB, vision=GB, mtp=GB // 2, source="t", named=True)
    got = run(meta(seed_config("qwen3_5_moe", mtp_layers=1), NVFP4_FP8_KV, weights=weights))
    text = render(got, "mine", "9.9.9")
    assert Profile.model_validate(yaml.safe_load(text)) == got.profile
    assert text.startswith("# Derived by spark-serve 9.9.9 from Hub test/model@0123456789ab at commit")
    assert "set revision to 0123456789abcdef" in text and "plan --profile mine" in text
    lines = {ln.split(":")[0].strip(): ln for ln in text.splitlines() if not ln.startswith("#")}
    for key in ("max_model_len", "kv_cache_dtype", "linear_backend", "reasoning_parser", "tool_call_parser"):
        assert "  # " in lines[key], key
