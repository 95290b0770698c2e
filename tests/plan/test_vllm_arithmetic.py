"""The memory planner against vLLM 0.32's own arithmetic.

For each architecture (its published ``config.json`` dimensions, no weights) vLLM
itself builds its configs (``EngineArgs.create_engine_config``), applies its model
rules (the Qwen3.5 ``mamba_ssm_dtype`` rule, "align" mode under prefix caching),
aligns the hybrid block size as on CUDA (``Platform._align_hybrid_block_size`` with
the 16-token kernel block of its CUDA attention backends) and sizes one sequence at
``max_model_len`` with its own KV cache specs (``FullAttentionSpec``, ``MambaSpec``,
``SlidingWindowSpec``, ``MLAAttentionSpec``). The planner, which imports neither
torch nor vLLM, must agree within 1 % (today: byte for byte): bytes per token
and bytes per sequence.

Where this differs from a CUDA start: the CPU build's own platform adjustments
(its 128-token block, its float32 GDN state, async scheduling off) are undone
before vLLM's CUDA-side rules are applied, and an MTP draft is given to vLLM's shape rule as its
speculative token count only (the CPU build cannot build the draft model); the
block of a model without linear attention is vLLM's default 16 tokens (a CUDA
backend that prefers another, FlashMLA's 64, changes only how ``max_model_len``
rounds up to blocks).
Qwen3.5's model class imports torchvision, which the CPU test environment does
not have: its case is the Qwen3-Next layout (the same Gated DeltaNet layers) with
the Qwen3.5 config rule applied by vLLM's own rule class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from entrypoint.meta import WeightSizes
from entrypoint.plan.hardware import load_table, named_device
from entrypoint.plan.memory import MemoryInputs, plan_memory
from entrypoint.plan.shape import model_shape

LEN = 32768
NAMED = named_device(load_table(), "gb10", "test")


def llama() -> dict[str, Any]:  # Llama 3.1 8B
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072,
            "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5, "rope_theta": 500000.0}  # fmt: skip


def qwen3() -> dict[str, Any]:  # Qwen3 4B
    return {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2560,
            "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "intermediate_size": 9728, "vocab_size": 151936, "max_position_embeddings": 40960,
            "torch_dtype": "bfloat16", "tie_word_embeddings": True}  # fmt: skip


def qwen3_next() -> dict[str, Any]:  # Qwen3-Next 80B-A3B
    return {"architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "hidden_size": 2048,
            "num_hidden_layers": 48, "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
            "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
            "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "full_attention_interval": 4,
            "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 512,
            "shared_expert_intermediate_size": 512, "intermediate_size": 5120, "vocab_size": 151936,
            "max_position_embeddings": 262144, "torch_dtype": "bfloat16", "decoder_sparse_step": 1,
            "partial_rotary_factor": 0.25, "mlp_only_layers": []}  # fmt: skip


def qwen3_5_text() -> dict[str, Any]:  # Qwen3.5's text layers: fp32 recurrent state by its config
    return qwen3_next() | {"mamba_ssm_dtype": "float32", "linear_num_value_heads": 48, "head_dim": 256}


def gpt_oss() -> dict[str, Any]:  # gpt-oss 20B: alternating sliding (128) and full attention
    return {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880,
            "num_hidden_layers": 24, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
            "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"] * 12,
            "num_local_experts": 32, "num_experts_per_tok": 4, "intermediate_size": 2880,
            "vocab_size": 201088, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
            "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                             "truncate": False, "original_max_position_embeddings": 4096}}  # fmt: skip


def nemotron_h() -> dict[str, Any]:  # Nemotron Nano 9B v2: Mamba-2, attention and MLP layers
    pattern = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-"
    return {"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "hidden_size": 4480,
            "num_hidden_layers": len(pattern), "hybrid_override_pattern": pattern,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "mamba_num_heads": 128,
            "mamba_head_dim": 80, "n_groups": 8, "ssm_state_size": 128, "conv_kernel": 4,
            "intermediate_size": 15680, "vocab_size": 131072, "max_position_embeddings": 131072,
            "torch_dtype": "bfloat16"}  # fmt: skip


def deepseek_v3() -> dict[str, Any]:  # DeepSeek-V3: multi-head latent attention
    return {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 7168,
            "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
            "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
            "v_head_dim": 128, "n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1,
            "moe_intermediate_size": 2048, "intermediate_size": 18432, "first_k_dense_replace": 3,
            "n_group": 8, "topk_group": 4, "vocab_size": 129280, "max_position_embeddings": 163840,
            "torch_dtype": "bfloat16"}  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    config: dict[str, Any]
    kv_cache_dtype: str = "auto"
    prefix_caching: bool = True
    speculative_tokens: int = 0
    tensor_parallel: int = 1  # Sparks (one GPU each) the engine spans


CASES = [
    Case("llama", llama()),
    Case("llama-fp8", llama(), kv_cache_dtype="fp8"),
    Case("qwen3", qwen3()),
    Case("qwen3-next", qwen3_next()),
    Case("qwen3-next-fp8", qwen3_next(), kv_cache_dtype="fp8"),
    Case("qwen3-next-no-prefix-caching", qwen3_next(), prefix_caching=False),
    Case("qwen3-next-mtp-2", qwen3_next(), speculative_tokens=2),
    Case("qwen3.5-fp32-state", qwen3_5_text()),
    Case("qwen3.5-fp32-state-fp8-mtp-3", qwen3_5_text(), kv_cache_dtype="fp8", speculative_tokens=3),
    Case("gpt-oss", gpt_oss()),
    Case("nemotron-h", nemotron_h()),
    Case("deepseek-v3", deepseek_v3()),
    Case("deepseek-v3-two-nodes", deepseek_v3(), tensor_parallel=2),
    Case("llama-two-nodes", llama(), tensor_parallel=2),
    Case("qwen3-next-two-nodes", qwen3_next(), tensor_parallel=2),
    Case("nemotron-h-fp8-no-prefix-caching", nemotron_h(), kv_cache_dtype="fp8", prefix_caching=False),
]


def vllm_per_sequence(case: Case, directory: Path) -> tuple[int, int, int]:
    """(KV bytes per token, bytes per sequence at LEN, attention block) by vLLM's own classes."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.models import ModelRegistry
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP, Qwen3_5ForConditionalGenerationConfig
    from vllm.platforms.interface import Platform
    from vllm.utils.torch_utils import STR_DTYPE_TO_TORCH_DTYPE
    from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend
    from vllm.v1.kv_cache_interface import FullAttentionSpec, MambaSpec, MLAAttentionSpec, SlidingWindowSpec

    (directory / "config.json").write_text(json.dumps(case.config))
    args = EngineArgs(
        model=str(directory),
        skip_tokenizer_init=True,
        load_format="dummy",
        max_model_len=LEN,
        kv_cache_dtype=case.kv_cache_dtype,
        enable_prefix_caching=case.prefix_caching,
        max_num_batched_tokens=2048,
    )
    vllm_config = args.create_engine_config()
    vllm_config.scheduler_config.async_scheduling = True  # on CUDA by default; the CPU build has it off
    vllm_config.parallel_config.tensor_parallel_size = case.tensor_parallel  # one rank's share
    cache, model = vllm_config.cache_config, vllm_config.model_config
    hf = model.hf_text_config
    kv_dtype = model.dtype if cache.cache_dtype == "auto" else STR_DTYPE_TO_TORCH_DTYPE[cache.cache_dtype]
    heads, head_size = model.get_num_kv_heads(vllm_config.parallel_config), model.get_head_size()
    types = list(getattr(hf, "layer_types", None) or getattr(hf, "layers_block_type", None) or [])
    if model.is_hybrid:
        # Undo the CPU build's own choices, then apply vLLM's CUDA-side rules.
        cache.mamba_ssm_cache_dtype, cache.block_size, cache.mamba_page_size_padded = "auto", 16, None
        if "mamba_ssm_dtype" in case.config:
            Qwen3_5ForConditionalGenerationConfig.verify_and_update_config(vllm_config)
        if model.architecture in MODELS_CONFIG_MAP:  # vLLM's per-architecture rules (Nemotron-H's)
            MODELS_CONFIG_MAP[model.architecture].verify_and_update_config(vllm_config)
        if case.speculative_tokens:  # only its token count is read by the state rules
            vllm_config.speculative_config = SimpleNamespace(num_speculative_tokens=case.speculative_tokens)
        Platform._align_hybrid_block_size(vllm_config, FlashAttentionBackend)
    else:
        cache.block_size = 16  # the CUDA attention backends' block
    heads = model.get_num_kv_heads(vllm_config.parallel_config)  # one rank's
    full: FullAttentionSpec
    if model.use_mla:  # one latent per token, on every rank
        full = MLAAttentionSpec(
            block_size=cache.block_size, num_kv_heads=1, head_size=head_size, dtype=kv_dtype,
            cache_dtype_str=cache.cache_dtype,
        )  # fmt: skip
    else:
        full = FullAttentionSpec(
            block_size=cache.block_size, num_kv_heads=heads, head_size=head_size, dtype=kv_dtype
        )
    total = 0
    for kind in types or ["full_attention"] * hf.num_hidden_layers:
        if kind == "full_attention":
            total += full.max_memory_usage_bytes(vllm_config)
        elif kind in ("mlp", "moe"):
            continue
        elif kind == "sliding_attention":
            sliding = SlidingWindowSpec(
                block_size=cache.block_size, num_kv_heads=heads, head_size=head_size, dtype=kv_dtype,
                sliding_window=hf.sliding_window,
            )  # fmt: skip
            total += sliding.max_memory_usage_bytes(vllm_config)
        else:
            model_cls, _ = ModelRegistry.resolve_model_cls(model.architecture, model_config=model)
            state = MambaSpec(
                shapes=model_cls.get_mamba_state_shape_from_config(vllm_config),
                dtypes=model_cls.get_mamba_state_dtype_from_config(vllm_config),
                block_size=cache.block_size,
                page_size_padded=cache.mamba_page_size_padded,
                mamba_cache_mode=cache.mamba_cache_mode,
                num_speculative_blocks=case.speculative_tokens,
            )
            total += state.max_memory_usage_bytes(vllm_config)
    if case.speculative_tokens:  # the MTP draft's full-attention layer
        total += full.max_memory_usage_bytes(vllm_config)
    full_layers = sum(1 for t in types if t == "full_attention") if types else hf.num_hidden_layers
    per_token = (
        (full_layers + (1 if case.speculative_tokens else 0)) * full.page_size_bytes // full.block_size
    )
    return per_token, total, cache.block_size


def planned(case: Case) -> tuple[int, int, int]:
    shape = model_shape(case.config | ({"mtp_num_hidden_layers": 1} if case.speculative_tokens else {}))
    inputs = MemoryInputs(
        shape=shape, weights=WeightSizes(0), kv_cache_dtype=case.kv_cache_dtype, max_model_len=LEN,
        max_num_seqs=256, max_num_batched_tokens=2048, language_model_only=True,
        mtp=bool(case.speculative_tokens), num_speculative_tokens=case.speculative_tokens,
        prefix_caching=case.prefix_caching, utilization=None, utilization_is_users=False,
        kv_cache_memory_bytes=None, reserve_bytes=0, nodes=case.tensor_parallel,
    )  # fmt: skip
    memory = plan_memory(NAMED, inputs)
    per_sequence = LEN * memory.kv_bytes_per_token + memory.state_bytes_per_sequence
    return memory.kv_bytes_per_token, per_sequence, memory.block_tokens


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_planner_sizes_a_sequence_as_vllm_does(case: Case, tmp_path: Path) -> None:
    vllm_token, vllm_sequence, vllm_block = vllm_per_sequence(case, tmp_path)
    plan_token, plan_sequence, plan_block = planned(case)
    assert (plan_token, plan_block) == (vllm_token, vllm_block)
    assert plan_sequence == pytest.approx(vllm_sequence, rel=0.01)  # (equal today, byte for byte)


def test_the_planner_imports_neither_torch_nor_vllm() -> None:
    import subprocess
    import sys

    code = (
        "import sys, entrypoint.plan.memory, entrypoint.plan.shape, entrypoint.plan.sizing;"
        "print(sorted(m for m in ('torch', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
