"""Checkpoint inspection from JSON metadata only (never imports torch).

Reads ``config.json`` and, when present, ``hf_quant_config.json`` and reports
what the launcher needs to decide: the quantization format, MoE, hybrid linear
attention, a vision tower, MTP layers and the context length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointUnreadableError

# vLLM's Mamba-style block alignment needs at least this many batched tokens
# on hybrid linear-attention models (Gated DeltaNet, Qwen3-Next / Qwen3.5).
HYBRID_MIN_BATCHED_TOKENS = 2096

_MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_MTP_KEYS = ("mtp_num_hidden_layers", "num_nextn_predict_layers")


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    model_type: str
    architectures: tuple[str, ...]
    quant_format: str  # one of profile.QuantFormat, or "other:<method>"
    is_moe: bool
    is_hybrid: bool
    has_vision: bool
    mtp_layers: int
    max_position_embeddings: int | None
    has_weights: bool


def added_tokens(tokenizer_config: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The added (special) tokens tokenizer_config.json lists, or None when it lists none."""
    decoder = (tokenizer_config or {}).get("added_tokens_decoder")
    if not isinstance(decoder, dict) or not decoder:
        return None
    return tuple(
        sorted(str(t["content"]) for t in decoder.values() if isinstance(t, dict) and "content" in t)
    )


def chat_template_of(tokenizer_config: dict[str, Any] | None, jinja: str | None) -> str | None:
    """The chat template a checkpoint ships, as text (a named list is joined)."""
    if jinja:
        return jinja
    template = (tokenizer_config or {}).get("chat_template")
    if isinstance(template, list):
        return "\n".join(str(t.get("template", "")) for t in template if isinstance(t, dict)) or None
    return template if isinstance(template, str) and template else None


def read_json(path: Path, checkpoint: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CheckpointUnreadableError(
            checkpoint, f"cannot read {path.name}: {err.strerror}", "make sure the checkpoint is complete"
        ) from err
    except json.JSONDecodeError as err:
        raise CheckpointUnreadableError(
            checkpoint,
            f"{path.name} is not valid JSON ({err.msg} at line {err.lineno})",
            "re-download the checkpoint",
        ) from err
    if not isinstance(data, dict):
        raise CheckpointUnreadableError(
            checkpoint, f"{path.name} is not a JSON object", "re-download the checkpoint"
        )
    return data


def _is_nvfp4_args(args: Any) -> bool:
    return (
        isinstance(args, dict)
        and args.get("num_bits") == 4
        and args.get("type") == "float"
        and args.get("group_size") == 16
    )


def _ct_format(qcfg: dict[str, Any]) -> str:
    groups = qcfg.get("config_groups") or {}
    fmt = qcfg.get("format")
    for group in groups.values():
        if not isinstance(group, dict) or not _is_nvfp4_args(group.get("weights")):
            continue
        if (group.get("format") or fmt) != "nvfp4-pack-quantized":
            continue
        return "ct-nvfp4" if _is_nvfp4_args(group.get("input_activations")) else "ct-nvfp4a16"
    return f"other:compressed-tensors:{fmt or 'unknown'}"


def _modelopt_format(algo: str | None) -> str:
    if algo == "NVFP4":
        return "modelopt-nvfp4"
    if algo == "W4A16_NVFP4":
        return "modelopt-w4a16-nvfp4"
    return f"other:modelopt:{algo or 'unknown'}"


def quant_format(config: dict[str, Any], hf_quant: dict[str, Any] | None) -> str:
    if hf_quant is not None:
        algo = (hf_quant.get("quantization") or {}).get("quant_algo")
        return _modelopt_format(algo)
    qcfg = config.get("quantization_config")
    if not qcfg:
        return "none"
    method = str(qcfg.get("quant_method", "unknown"))
    if method == "compressed-tensors":
        return _ct_format(qcfg)
    if method in ("modelopt", "modelopt_fp4"):
        return _modelopt_format(qcfg.get("quant_algo"))
    return f"other:{method}"


def _first_int(configs: list[dict[str, Any]], keys: tuple[str, ...]) -> int:
    for cfg in configs:
        for key in keys:
            value = cfg.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return 0


def describe(
    config: dict[str, Any], hf_quant: dict[str, Any] | None, *, path: str, has_weights: bool
) -> CheckpointInfo:
    """Pure: derive a CheckpointInfo from parsed JSON."""
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    configs = [text, config]
    layer_types = text.get("layer_types") or config.get("layer_types") or []
    is_hybrid = "linear_attention" in layer_types or any(
        c.get("model_type") in ("qwen3_next",) for c in configs
    )
    max_pos = next(
        (c["max_position_embeddings"] for c in configs if isinstance(c.get("max_position_embeddings"), int)),
        None,
    )
    return CheckpointInfo(
        path=path,
        model_type=str(config.get("model_type", "unknown")),
        architectures=tuple(config.get("architectures") or ()),
        quant_format=quant_format(config, hf_quant),
        is_moe=_first_int(configs, _MOE_KEYS) > 1,
        is_hybrid=is_hybrid,
        has_vision=isinstance(config.get("vision_config"), dict),
        mtp_layers=_first_int(configs, _MTP_KEYS),
        max_position_embeddings=max_pos,
        has_weights=has_weights,
    )


def inspect_checkpoint(directory: Path) -> CheckpointInfo:
    """Read a checkpoint directory's metadata."""
    checkpoint = str(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointUnreadableError(
            checkpoint, "has no config.json", "point MODEL at a Hugging Face model directory"
        )
    config = read_json(config_path, checkpoint)
    quant_path = directory / "hf_quant_config.json"
    hf_quant = read_json(quant_path, checkpoint) if quant_path.is_file() else None
    has_weights = any(directory.glob("*.safetensors"))
    return describe(config, hf_quant, path=checkpoint, has_weights=has_weights)
