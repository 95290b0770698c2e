"""The memory planner against hand calculations, at the seed architectures' real
dimensions, built with transformers' own config classes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from entrypoint.meta import WeightSizes
from entrypoint.plan.hardware import GB, GIB, load_table, named_device
from entrypoint.plan.memory import MemoryInputs, plan_memory, start_utilization, what_would_fit
from entrypoint.plan.shape import model_shape, split_weights

TABLE = load_table()
GB10 = named_device(TABLE, "gb10", "test")
H100 = named_device(TABLE, "h100", "test")


def llama_8b() -> dict[str, Any]:
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=131072,
    ).to_dict()


def qwen3_4b() -> dict[str, Any]:
    from transformers import Qwen3Config

    return Qwen3Config(
        hidden_size=2560,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=9728,
        vocab_size=151936,
        max_position_embeddings=40960,
    ).to_dict()


def qwen3_5_27b() -> dict[str, Any]:
    """Hybrid (3 linear : 1 full), vision encoder, one MTP layer."""
    from transformers import Qwen3_5Config

    return Qwen3_5Config(
        text_config=dict(
            hidden_size=5120,
            num_hidden_layers=64,
            num_attention_heads=24,
            num_key_value_heads=4,
            head_dim=256,
            intermediate_size=17408,
            vocab_size=248320,
            mtp_num_hidden_layers=1,
            linear_num_key_heads=16,
            linear_num_value_heads=48,
            linear_key_head_dim=128,
            linear_value_head_dim=128,
            linear_conv_kernel_dim=4,
        )
    ).to_dict()


def qwen3_5_moe_35b() -> dict[str, Any]:
    """Hybrid MoE: 40 layers (10 full), 256 experts, top-8."""
    from transformers import Qwen3_5MoeConfig

    return Qwen3_5MoeConfig(
        text_config=dict(
            hidden_size=2048,
            num_hidden_layers=40,
            num_attention_heads=16,
            num_key_value_heads=2,
            head_dim=256,
            num_experts=256,
            num_experts_per_tok=8,
            moe_intermediate_size=512,
            vocab_size=248320,
        )
    ).to_dict()


def inputs(config: dict[str, Any], weights: WeightSizes, **over: Any) -> MemoryInputs:
    base: dict[str, Any] = dict(
        shape=model_shape(config),
        weights=weights,
        kv_cache_dtype="fp8",
        max_model_len=32768,
        max_num_seqs=8,
        max_num_batched_tokens=8192,
        language_model_only=False,
        mtp=False,
        utilization=None,
        utilization_is_users=False,
        kv_cache_memory_bytes=None,
        reserve_bytes=8 * GIB,
    )
    return MemoryInputs(**{**base, **over})


def test_llama_dense_kv_per_token_is_every_layer() -> None:
    shape = model_shape(llama_8b())
    # 32 layers × (K + V) × 8 KV heads × 128 dims × 2 bytes (bf16) = 131,072 B
    assert shape.full_attention_layers == 32 and shape.linear_layers == 0
    plan = plan_memory(GB10, inputs(llama_8b(), WeightSizes(5 * GB), kv_cache_dtype="auto"))
    assert plan.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2 == 131072
    fp8 = plan_memory(GB10, inputs(llama_8b(), WeightSizes(5 * GB)))
    assert fp8.kv_bytes_per_token == 65536


def test_qwen3_dense_on_a_spark_takes_the_unified_budget_less_the_reserve() -> None:
    weights = WeightSizes(int(2.9 * GB))
    plan = plan_memory(GB10, inputs(qwen3_4b(), weights, max_num_seqs=64))
    total = int(130.66 * GB)  # a Spark's MemTotal (configs/hardware.yaml)
    assert plan.device_bytes == total and plan.reserve_bytes == 8 * GIB
    assert plan.budget_bytes == total - 8 * GIB
    assert plan.kv_bytes_per_token == 36 * 2 * 8 * 128 * 1  # fp8: 73,728 B
    # allowance: 6 GiB runtime overhead + 8192 tokens × (4×2560 + 2×9728) × 2 B + 64 × 151936 × 4 B × 2
    assert plan.allowance_bytes == 6 * GIB + 8192 * (4 * 2560 + 2 * 9728) * 2 + 64 * 151936 * 8
    room = plan.budget_bytes - plan.weights_bytes - plan.allowance_bytes
    assert plan.kv_cache_bytes == min(room, 64 * 32768 * 73728) == room  # 64 full sequences do not fit
    assert plan.kv_cache_tokens == room // 73728
    assert plan.max_concurrent_sequences == room // (32768 * 73728)
    assert plan.explicit_kv and plan.fits
    # utilization is set at start from MemAvailable less vLLM's pre-check use (3 GiB on a
    # Spark); at the budget it is (budget − 3 GiB) ÷ total, rounded down to 1/10,000
    assert plan.utilization_at_start and plan.precheck_bytes == 3 * GIB
    assert plan.gpu_memory_utilization == (plan.budget_bytes - 3 * GIB) * 10_000 // total / 10_000
    # decode ceiling: 273 GB/s ÷ 2.9 GB of weights read per token
    assert plan.decode_ceiling_tokens_per_s == pytest.approx(273 / 2.9, rel=1e-3)


def test_the_profiles_share_caps_the_budget_and_kv_stops_at_what_sequences_use() -> None:
    plan = plan_memory(GB10, inputs(qwen3_4b(), WeightSizes(int(2.9 * GB)), utilization=0.3, max_num_seqs=4))
    assert plan.budget_bytes == int(0.3 * 130.66 * GB)
    assert plan.kv_cache_bytes == 4 * 32768 * 73728  # 4 sequences at full length, not the whole budget


def test_hybrid_with_vision_and_mtp_counts_only_full_attention_and_linear_state() -> None:
    config = qwen3_5_27b()
    shape = model_shape(config)
    assert (shape.full_attention_layers, shape.linear_layers, shape.mtp_layers) == (16, 48, 1)
    weights = WeightSizes(int(18 * GB), vision=int(0.9 * GB), mtp=int(0.4 * GB))
    plain = plan_memory(GB10, inputs(config, weights))
    # 16 full layers × 2 × 4 heads × 256 × 1 B (fp8)
    assert plain.kv_bytes_per_token == 16 * 2 * 4 * 256 == 32768
    # One linear layer's state block: conv 3 × (2×16×128 + 48×128) + recurrent 48×128×128, in
    # bf16. vLLM raises the attention block to 16 × ⌈state ÷ (16 × 2,048 B)⌉ = 800 tokens, pads the
    # state to that page, and with prefix caching ("align") keeps 2 blocks per layer and sequence;
    # 32,768 tokens take 41 whole blocks of 800, 32 tokens more.
    state = (3 * 10240 + 786432) * 2
    block = 16 * -(-state // (16 * 2048))
    assert block == 800 == plain.block_tokens
    assert plain.state_bytes_per_sequence == 48 * 2 * block * 2048 + 32 * 16 * 2048
    no_prefix = plan_memory(GB10, inputs(config, weights, prefix_caching=False))
    assert no_prefix.state_bytes_per_sequence == 48 * 1 * block * 2048 + 32 * 16 * 2048
    fp32 = plan_memory(GB10, inputs(config | {"mamba_ssm_dtype": "float32"}, weights))
    wide = 3 * 10240 * 2 + 786432 * 4  # the recurrent state in float32, the conv state in bf16
    wide_block = 16 * -(-wide // (16 * 2048))
    rounding = (-(-32768 // wide_block) * wide_block - 32768) * 16 * 2048
    assert fp32.state_bytes_per_sequence == 48 * 2 * wide_block * 2048 + rounding
    assert plain.weights_bytes == int(18 * GB) - int(0.4 * GB)  # MTP layers are not loaded without MTP
    mtp = plan_memory(GB10, inputs(config, weights, mtp=True, num_speculative_tokens=2))
    assert mtp.kv_bytes_per_token == (16 + 1) * 2 * 4 * 256  # the draft layer holds KV too
    # MTP widens the conv state by one token per speculative token and adds as many state blocks
    spec_state = (5 * 10240 + 786432) * 2
    spec_block = 16 * -(-spec_state // (16 * 2048))
    rounding = (-(-32768 // spec_block) * spec_block - 32768) * 17 * 2048
    assert mtp.state_bytes_per_sequence == 48 * (2 + 2) * spec_block * 2048 + rounding
    assert mtp.weights_bytes == int(18 * GB)
    text_only = plan_memory(GB10, inputs(config, weights, language_model_only=True))
    assert text_only.weights_bytes == int(18 * GB) - int(0.9 * GB) - int(0.4 * GB)


def test_hybrid_moe_decode_reads_only_the_routed_share_of_experts() -> None:
    config = qwen3_5_moe_35b()
    shape = model_shape(config)
    assert (shape.full_attention_layers, shape.num_experts, shape.experts_per_token) == (10, 256, 8)
    weights = WeightSizes(int(20 * GB), vision=int(0.8 * GB), experts=int(17 * GB))
    plan = plan_memory(GB10, inputs(config, weights))
    read = (20 - 0.8 - 17) * GB + 17 * GB * 8 / 256  # dense part + 8/256 of the experts
    assert plan.decode_ceiling_tokens_per_s == pytest.approx(273 * GB / read, rel=1e-3)
    at_len = 273 * GB / (read + plan.kv_bytes_per_token * 32768)
    assert plan.decode_ceiling_at_max_len_tokens_per_s == pytest.approx(at_len, rel=1e-3)


def test_dedicated_memory_keeps_utilization_and_passes_no_kv_size() -> None:
    plan = plan_memory(H100, inputs(llama_8b(), WeightSizes(5 * GB), utilization=0.85))
    assert plan.budget_bytes == int(0.85 * 80 * GB) and plan.reserve_bytes == 0
    assert not plan.explicit_kv and plan.gpu_memory_utilization is None
    assert plan.kv_cache_bytes == plan.budget_bytes - 5 * GB - plan.allowance_bytes


def test_a_users_utilization_wins_on_unified_memory() -> None:
    plan = plan_memory(
        GB10, inputs(qwen3_4b(), WeightSizes(3 * GB), utilization=0.5, utilization_is_users=True)
    )
    assert plan.budget_bytes == int(0.5 * 130.66 * GB) and not plan.explicit_kv


def test_a_users_kv_size_without_a_utilization_gets_one_set_at_start() -> None:
    kv = 20 * GIB
    plan = plan_memory(GB10, inputs(qwen3_4b(), WeightSizes(3 * GB), kv_cache_memory_bytes=kv))
    assert not plan.explicit_kv and plan.kv_cache_bytes == kv  # the user's size is passed as given
    assert plan.utilization_at_start and plan.gpu_memory_utilization is not None
    assert plan.gpu_memory_utilization == round(plan.gpu_memory_utilization, 4)
    users = plan_memory(GB10, inputs(qwen3_4b(), WeightSizes(3 * GB), kv_cache_memory_bytes=kv,
                                     utilization=0.5, utilization_is_users=True))  # fmt: skip
    assert users.gpu_memory_utilization is None and not users.utilization_at_start  # the user's stays


@pytest.mark.parametrize("total", [int(130.66 * GB), 121 * GIB + 12_345, 16 * GB, 7])
@pytest.mark.parametrize("available", [0, 1, 2 * GIB, 60 * GIB + 999, 117 * GIB, 10**12])
def test_the_start_utilization_passes_vllms_check_and_is_the_largest_that_does(
    total: int, available: int
) -> None:
    """vLLM 0.32 (v1/worker/utils.py request_memory): math.ceil(total * u) <= free, with
    free read once its processes hold the pre-check use."""
    precheck = 3 * GIB
    util = start_utilization(available, precheck, total)
    assert util == round(util, 4) and 1e-4 <= util <= 1
    free = available - precheck
    if math.ceil(total * 1e-4) <= free:
        assert math.ceil(total * util) <= free
        if util < 1:
            assert math.ceil(total * (util + 1e-4)) > free  # rounded down, not further


def test_what_does_not_fit_gets_suggestions_that_would() -> None:
    config = qwen3_5_27b()
    weights = WeightSizes(int(18 * GB), vision=int(0.9 * GB))
    small = named_device(TABLE, "rtx-5090", "test")  # 32 GB × 0.9
    huge = inputs(config, weights, max_model_len=200000, kv_cache_dtype="auto", utilization=0.9)
    plan = plan_memory(small, huge)
    assert not plan.fits
    ideas = what_would_fit(small, huge, plan)
    assert any(i.startswith("MAX_MODEL_LEN=") for i in ideas) and "KV_CACHE_DTYPE=fp8" in ideas
    longest = int(ideas[0].split("=")[1].split()[0])
    assert plan_memory(small, inputs(config, weights, max_model_len=longest, kv_cache_dtype="auto")).fits


def test_weights_split_by_tensor_name() -> None:
    tensors = {
        "model.language_model.layers.0.mlp.experts.3.down_proj.weight": 100,
        "model.language_model.layers.0.mlp.shared_expert.down_proj.weight": 10,
        "model.visual.blocks.0.attn.qkv.weight": 20,
        "mtp.layers.0.self_attn.q_proj.weight": 5,
        "model.layers.61.eh_proj.weight": 7,  # DeepSeek's next-n layer past num_hidden_layers
        "lm_head.weight": 50,
    }
    split = split_weights(tensors, 61, source="test")
    assert (split.total, split.experts, split.vision, split.mtp) == (192, 100, 20, 12)
    assert split.language_model == 160


def test_a_tied_lm_head_is_not_loaded_and_decode_reads_embedding_rows_not_the_table() -> None:
    tensors = {
        "model.embed_tokens.weight": 400,
        "model.layers.0.mlp.down_proj.weight": 100,
        "lm_head.weight": 400,
    }
    tied = split_weights(tensors, 1, source="test", tied=True)
    assert (tied.total, tied.embedding, tied.skipped) == (900, 400, 400)
    untied = split_weights(tensors, 1, source="test")
    assert (untied.embedding, untied.skipped) == (400, 0)
    tied_config = qwen3_4b() | {"tie_word_embeddings": True}
    untied_config = qwen3_4b() | {"tie_word_embeddings": False}
    a = plan_memory(GB10, inputs(tied_config, tied))
    b = plan_memory(GB10, inputs(untied_config, untied))
    assert a.weights_bytes == 500 and b.weights_bytes == 900  # vLLM skips a tied lm_head
    # tied: the lm_head step reads the embedding table whole; untied: the lm_head, and a few rows
    assert a.decode_read_bytes == 500 and b.decode_read_bytes == 500
    assert model_shape(tied_config).tied_embeddings and not model_shape(untied_config).tied_embeddings


def test_a_cluster_splits_weights_and_kv_per_node_and_tensor_parallel_lifts_the_ceiling() -> None:
    weights = WeightSizes(int(150 * GB))  # more than one Spark holds
    one = plan_memory(GB10, inputs(llama_8b(), weights, kv_cache_dtype="auto"))
    two = plan_memory(GB10, inputs(llama_8b(), weights, kv_cache_dtype="auto", nodes=2))
    assert two.weights_bytes == one.weights_bytes // 2
    assert two.kv_bytes_per_token == one.kv_bytes_per_token // 2
    assert not one.fits and two.fits
    assert two.decode_ceiling_tokens_per_s == pytest.approx(2 * one.decode_ceiling_tokens_per_s, rel=1e-3)
    pipe = plan_memory(GB10, inputs(llama_8b(), weights, kv_cache_dtype="auto", nodes=2, parallel="pipeline"))
    assert pipe.weights_bytes == two.weights_bytes
    assert pipe.decode_ceiling_tokens_per_s == pytest.approx(one.decode_ceiling_tokens_per_s, rel=1e-3)
