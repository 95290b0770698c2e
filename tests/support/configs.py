"""Config-only checkpoints of the seed architectures, from transformers' config classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_TEXT = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    vocab_size=256,
    max_position_embeddings=32768,
)
_VISION = dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64)


def seed_config(arch: str, *, mtp_layers: int = 0, vision: bool = True) -> dict[str, Any]:
    from transformers import LlamaConfig, Qwen3_5Config, Qwen3_5MoeConfig, Qwen3Config

    if arch == "llama":
        return LlamaConfig(**_TEXT, intermediate_size=128, architectures=["LlamaForCausalLM"]).to_dict()
    if arch == "qwen3":
        return Qwen3Config(**_TEXT, intermediate_size=128, architectures=["Qwen3ForCausalLM"]).to_dict()
    extra = {"mtp_num_hidden_layers": mtp_layers} if mtp_layers else {}
    if arch == "qwen3_5":
        config = Qwen3_5Config(
            text_config=dict(_TEXT, intermediate_size=128, **extra),
            vision_config=_VISION,
            architectures=["Qwen3_5ForConditionalGeneration"],
        )
    elif arch == "qwen3_5_moe":
        config = Qwen3_5MoeConfig(
            text_config=dict(_TEXT, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, **extra),
            vision_config=_VISION,
            architectures=["Qwen3_5MoeForConditionalGeneration"],
        )
    else:
        raise ValueError(arch)
    data = config.to_dict()
    if not vision:
        data.pop("vision_config")
    return data


def write_checkpoint(
    out: Path, config: dict[str, Any], *, hf_quant: dict[str, Any] | None = None, weights: bool = True
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    if hf_quant is not None:
        (out / "hf_quant_config.json").write_text(json.dumps(hf_quant))
    if weights:
        (out / "model.safetensors").write_bytes(b"")
    return out


MODELOPT_NVFP4 = {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16}}
