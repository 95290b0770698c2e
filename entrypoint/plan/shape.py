"""What the memory planner needs from a checkpoint (pure, from JSON only).

:class:`ModelShape` comes from ``config.json`` (its ``text_config`` for
vision-language models); :class:`WeightSizes` from the safetensors headers'
tensor names and byte ranges, split into the language model, its routed
experts, the vision tower and the MTP layers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..meta import WeightSizes

_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}
_VISION = re.compile(
    r"(^|\.)(visual|vision_tower|vision_model|vision_encoder|multi_modal_projector|mm_projector)\."
)
_MTP = re.compile(r"(^|\.)mtp\.")
_EXPERT = re.compile(r"\.experts\.")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBEDDING = re.compile(r"(^|\.)embed_tokens\.weight$")
_LM_HEAD = re.compile(r"(^|\.)lm_head\.weight$")
_PATTERN = {"M": "mamba", "*": "full_attention", "-": "mlp", "E": "moe"}  # hybrid_override_pattern


def _int(cfg: Mapping[str, Any], *keys: str, default: int = 0) -> int:
    for key in keys:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_layers: int
    full_attention_layers: int
    sliding_layers: int
    sliding_window: int
    linear_layers: int
    kv_heads: int
    head_dim: int
    mla_dim: int  # kv_lora_rank + qk_rope_head_dim for MLA models, else 0
    linear_conv_dim: int  # Gated DeltaNet: 2·k_heads·k_dim + v_heads·v_dim; Mamba-2: inner + 2·groups·state
    linear_conv_kernel: int
    linear_state: int  # recurrent state elements: v_heads·v_dim·k_dim; Mamba-2: heads·head_dim·state
    vocab_size: int
    intermediate_size: int
    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int
    mtp_layers: int
    dtype_bytes: int
    max_position_embeddings: int | None
    ssm_dtype_bytes: int = 0  # the recurrent state's element size (0: the model dtype's)
    tied_embeddings: bool = False  # the lm_head is the input embedding (config's tie_word_embeddings)

    def attention_bytes_per_token(self, kv_bytes: int) -> int:
        """KV bytes one token takes in one full-attention layer."""
        if self.mla_dim:
            return self.mla_dim * kv_bytes
        return 2 * self.kv_heads * self.head_dim * kv_bytes

    def linear_state_bytes(self, speculative_tokens: int = 0) -> int:
        """One state block of one linear-attention layer: the conv state (kernel − 1
        tokens, plus one per speculative token) in the model dtype and the recurrent
        state in its own dtype, as vLLM's Gated DeltaNet and Mamba-2 state calculators
        shape them."""
        conv = self.linear_conv_dim * max(self.linear_conv_kernel - 1 + speculative_tokens, 0)
        return conv * self.dtype_bytes + self.linear_state * (self.ssm_dtype_bytes or self.dtype_bytes)


def model_shape(config: Mapping[str, Any]) -> ModelShape:
    nested = config.get("text_config")
    text: Mapping[str, Any] = nested if isinstance(nested, dict) else config
    both = {**config, **text}
    hidden = _int(both, "hidden_size", "d_model")
    layers = _int(both, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(both, "num_attention_heads", "n_head", default=1)
    kv_heads = _int(both, "num_key_value_heads", default=heads)
    head_dim = _int(both, "head_dim", default=hidden // heads if heads else 0)
    types = list(text.get("layer_types") or config.get("layer_types") or both.get("layers_block_type") or [])
    pattern = both.get("hybrid_override_pattern")
    if not types and isinstance(pattern, str):  # Nemotron-H: M Mamba-2, * attention, - MLP, E MoE
        types = [_PATTERN.get(c, "mlp") for c in pattern]
    if not types and _int(both, "full_attention_interval"):
        every = _int(both, "full_attention_interval")
        types = ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(layers)]
    if not types:
        types = ["full_attention"] * layers
    linear = sum(1 for t in types if "linear" in str(t) or "mamba" in str(t))
    sliding = sum(1 for t in types if "sliding" in str(t))
    cacheless = sum(1 for t in types if str(t) in ("mlp", "moe"))
    k_heads, v_heads = _int(both, "linear_num_key_heads"), _int(both, "linear_num_value_heads")
    k_dim, v_dim = _int(both, "linear_key_head_dim"), _int(both, "linear_value_head_dim")
    conv_dim, state = 2 * k_heads * k_dim + v_heads * v_dim, v_heads * v_dim * k_dim  # Gated DeltaNet
    kernel = _int(both, "linear_conv_kernel_dim", default=4)
    dtype = str(text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype") or "bfloat16")
    # vLLM keeps the recurrent state in the config's mamba_ssm_dtype (Qwen3.5's
    # config rule, vllm/model_executor/models/config.py), else in the model dtype.
    ssm_dtype = text.get("mamba_ssm_dtype") or config.get("mamba_ssm_dtype")
    if _int(both, "mamba_num_heads"):  # Mamba-2 (vLLM's mamba2_state_shape)
        inner = _int(both, "mamba_num_heads") * _int(both, "mamba_head_dim")
        groups_state = 2 * _int(both, "n_groups", default=1) * _int(both, "ssm_state_size")
        conv_dim, state = inner + groups_state, inner * _int(both, "ssm_state_size")
        kernel = _int(both, "conv_kernel", default=4)
        if str(both.get("model_type", "")).startswith("nemotron_h"):  # vLLM's Nemotron-H rule
            ssm_dtype = both.get("mamba_ssm_cache_dtype") or "float32"
    max_pos = both.get("max_position_embeddings")
    return ModelShape(
        hidden_size=hidden,
        num_layers=layers,
        full_attention_layers=len(types) - linear - sliding - cacheless,
        sliding_layers=sliding,
        sliding_window=_int(both, "sliding_window"),
        linear_layers=linear,
        kv_heads=kv_heads,
        head_dim=head_dim,
        mla_dim=_int(both, "kv_lora_rank") + _int(both, "qk_rope_head_dim") if "kv_lora_rank" in both else 0,
        linear_conv_dim=conv_dim,
        linear_conv_kernel=kernel,
        linear_state=state,
        vocab_size=_int(both, "vocab_size"),
        intermediate_size=_int(both, "intermediate_size"),
        num_experts=_int(both, "num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"),
        experts_per_token=_int(both, "num_experts_per_tok", "moe_topk", "top_k", default=1),
        moe_intermediate_size=_int(both, "moe_intermediate_size"),
        mtp_layers=_int(both, "mtp_num_hidden_layers", "num_nextn_predict_layers"),
        dtype_bytes=_DTYPE_BYTES.get(dtype, 2),
        max_position_embeddings=max_pos if isinstance(max_pos, int) else None,
        ssm_dtype_bytes=_DTYPE_BYTES.get(str(ssm_dtype), 0) if ssm_dtype else 0,
        tied_embeddings=tied_embeddings(config),
    )


def tied_embeddings(config: Mapping[str, Any]) -> bool:
    """Whether the checkpoint ties its lm_head to the input embedding (vLLM then
    skips a stored ``lm_head.weight``)."""
    text = config.get("text_config")
    found = text.get("tie_word_embeddings") if isinstance(text, dict) else None
    return bool(config.get("tie_word_embeddings") if found is None else found)


def split_weights(
    tensors: Mapping[str, int], num_layers: int, *, source: str, total: int | None = None, tied: bool = False
) -> WeightSizes:
    """Pure: tensor name → bytes, split by name. MTP layers are tensors under
    ``mtp.`` or layer indices at or past ``num_layers`` (DeepSeek's next-n layers).
    With ``tied`` embeddings a stored ``lm_head.weight`` is counted as skipped."""
    vision = mtp = experts = embedding = skipped = 0
    for name, size in tensors.items():
        layer = _LAYER.search(name)
        if _VISION.search(name):
            vision += size
        elif tied and _LM_HEAD.search(name):
            skipped += size
        elif _EMBEDDING.search(name) and not _MTP.search(name):
            embedding += size
        elif _MTP.search(name) or (layer is not None and num_layers and int(layer[1]) >= num_layers):
            mtp += size
        elif _EXPERT.search(name) and "shared_expert" not in name:
            experts += size
    measured = sum(tensors.values())
    return WeightSizes(
        total if total is not None else measured,
        vision,
        mtp,
        experts,
        source,
        named=bool(tensors),
        embedding=embedding,
        skipped=skipped,
    )
