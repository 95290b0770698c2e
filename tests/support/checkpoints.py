"""Tiny checkpoints generated on the spot: a trained tokenizer, random weights.

Formats: bf16 Llama; compressed-tensors ``nvfp4-pack-quantized`` W4A4 and
W4A16 (made with compressed-tensors' own presets and compressor); ModelOpt
NVFP4 and W4A16_NVFP4 (packed with vLLM's reference NVFP4 quantizer); and
config-only directories of the seed architectures for inspection tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

HIDDEN = 128  # head_dim 64: the CPU attention backend rejects 16
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "spark serve answers chat completions with a tiny model",
    "hello world, how are you today? i am fine, thank you",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation . , ! ? : ;",
]


def train_tokenizer(out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # <|python_tag|>: Llama 3's tool-call token, which vLLM's llama3_json tool parser requires
    specials = ["<|pad|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|python_tag|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def _llama(vocab_size: int, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config.architectures = ["LlamaForCausalLM"]  # what save_pretrained writes; ModelOpt exports too
    return LlamaForCausalLM(config).to(dtype)


def _vocab_size(tokenizer: Any) -> int:
    return ((len(tokenizer) + 63) // 64) * 64


def bf16_llama(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out)
    _llama(_vocab_size(tokenizer), torch.bfloat16).save_pretrained(out, safe_serialization=True)
    return out


def ct_nvfp4(out: Path, *, weight_only: bool) -> Path:
    """compressed-tensors nvfp4-pack-quantized via its presets and ModelCompressor."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationConfig,
        QuantizationStatus,
        apply_quantization_config,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out)
    model = _llama(_vocab_size(tokenizer), torch.bfloat16)
    scheme = preset_name_to_scheme("NVFP4A16" if weight_only else "NVFP4", ["Linear"])
    config = QuantizationConfig(
        config_groups={"group_0": scheme},
        ignore=["lm_head"],
        quantization_status=QuantizationStatus.CALIBRATION,
    )
    apply_quantization_config(model, config)
    for module in model.modules():
        args = getattr(getattr(module, "quantization_scheme", None), "weights", None)
        if args is None:
            continue
        weight = module.weight.data.float()
        gscale = generate_gparam(weight.min(), weight.max())
        groups = weight.reshape(weight.shape[0], -1, args.group_size)
        scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args, global_scale=gscale)
        module.weight_global_scale.data.copy_(gscale)
        module.weight_scale.data.copy_(scale.to(module.weight_scale.dtype))
        module.weight_zero_point.data.copy_(zero.to(module.weight_zero_point.dtype))
        if hasattr(module, "input_global_scale"):
            module.input_global_scale.data.copy_(generate_gparam(torch.tensor(-4.0), torch.tensor(4.0)))
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="nvfp4-pack-quantized")
    compressor.compress_model(model)
    model.save_pretrained(out, safe_serialization=True)
    compressor.update_config(str(out))
    return out


def _pack_nvfp4(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """ModelOpt NVFP4 tensors for one weight, using vLLM's reference quantizer."""
    from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8
    from vllm.model_executor.layers.quantization.utils.nvfp4_emulation_utils import ref_nvfp4_quant

    w = weight.float()
    global_scale = (448.0 * 6.0 / w.abs().max().clamp(min=1e-8)).to(torch.float32)
    values, scale = ref_nvfp4_quant(w, global_scale, 16)
    return {
        "weight": pack_fp4_to_uint8(values),
        "weight_scale": scale.to(torch.float8_e4m3fn),
        "weight_scale_2": (1.0 / global_scale).reshape(()),
    }


def modelopt_nvfp4(out: Path, *, weight_only: bool) -> Path:
    """ModelOpt NVFP4 / W4A16_NVFP4: packed weights, fp8 block scales, global scales."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(out)
    model = _llama(_vocab_size(tokenizer), torch.bfloat16)
    model.config.save_pretrained(out)
    tensors: dict[str, torch.Tensor] = {}
    for name, param in model.state_dict().items():
        prefix = name.removesuffix(".weight")
        is_linear = name.endswith("_proj.weight")
        if not is_linear:
            tensors[name] = param.contiguous()
            continue
        for suffix, tensor in _pack_nvfp4(param).items():
            tensors[f"{prefix}.{suffix}"] = tensor.contiguous()
        if not weight_only:
            tensors[f"{prefix}.input_scale"] = torch.tensor(4.0 / (448.0 * 6.0), dtype=torch.float32)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    algo = "W4A16_NVFP4" if weight_only else "NVFP4"
    quant = {
        "quant_algo": algo,
        "kv_cache_quant_algo": None,
        "group_size": 16,
        "exclude_modules": ["lm_head"],
    }
    (out / "hf_quant_config.json").write_text(
        json.dumps({"producer": {"name": "modelopt", "version": "0.37.0"}, "quantization": quant}, indent=2)
    )
    config = json.loads((out / "config.json").read_text())
    # config.json carries the flat form newer ModelOpt exports write ("ignore").
    flat = {k: v for k, v in quant.items() if k != "exclude_modules"}
    config["quantization_config"] = {"quant_method": "modelopt", **flat, "ignore": quant["exclude_modules"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


FORMATS = {
    "bf16": bf16_llama,
    "ct-nvfp4": lambda out: ct_nvfp4(out, weight_only=False),
    "ct-nvfp4a16": lambda out: ct_nvfp4(out, weight_only=True),
    "modelopt-nvfp4": lambda out: modelopt_nvfp4(out, weight_only=False),
    "modelopt-w4a16-nvfp4": lambda out: modelopt_nvfp4(out, weight_only=True),
}
