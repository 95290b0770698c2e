"""Fit a resolved plan to the checkpoint it will serve (pure)."""

from __future__ import annotations

from ..errors import CheckpointMismatchError, ConflictError
from .checkpoint import HYBRID_MIN_BATCHED_TOKENS, CheckpointInfo
from .resolve import Plan, Setting

_FORMAT_NAMES = {
    "modelopt-nvfp4": "ModelOpt NVFP4 (W4A4)",
    "modelopt-w4a16-nvfp4": "ModelOpt W4A16_NVFP4",
    "ct-nvfp4": "compressed-tensors nvfp4-pack-quantized (W4A4)",
    "ct-nvfp4a16": "compressed-tensors nvfp4-pack-quantized (W4A16)",
    "none": "unquantized",
    "other": "another format vLLM detects (not NVFP4)",
}


def format_name(fmt: str) -> str:
    return _FORMAT_NAMES.get(fmt, fmt)


def fit_checkpoint(plan: Plan, info: CheckpointInfo, *, weights_required: bool = True) -> Plan:
    """Refuse what the checkpoint cannot serve; derive what it forces."""
    if weights_required and not info.has_weights:
        raise CheckpointMismatchError(
            info.path, "has no *.safetensors weight files", "download the complete checkpoint"
        )
    if plan.profile is not None:
        expected = plan.profile.profile.quantization
        found = "other" if info.quant_format.startswith("other:") else info.quant_format
        if found != expected:
            raise CheckpointMismatchError(
                info.path,
                f"is {format_name(info.quant_format)} but profile '{plan.profile.name}' "
                f"expects {format_name(expected)} ({plan.profile.path}: quantization)",
                "serve it with the profile made for this format, or correct the profile's quantization field",
            )
    spec = plan.value("speculative_config")
    if spec is not None and spec.get("method") == "mtp" and info.mtp_layers == 0:
        origin = plan.settings["speculative_config"].origin
        raise CheckpointMismatchError(
            info.path,
            f"has no MTP layers, but {origin} asks for MTP speculative decoding",
            "choose a variant without MTP or a checkpoint that ships its MTP layers",
        )
    if info.is_hybrid:
        plan = _hybrid_floor(plan)
    max_len = plan.value("max_model_len")
    if max_len is not None and info.max_position_embeddings and max_len > info.max_position_embeddings:
        origin = plan.settings["max_model_len"].origin
        raise ConflictError(
            ["max_model_len"],
            f"{origin}: max_model_len {max_len} exceeds the checkpoint's "
            f"max_position_embeddings {info.max_position_embeddings}",
            f"set MAX_MODEL_LEN to at most {info.max_position_embeddings}",
        )
    return plan


def _hybrid_floor(plan: Plan) -> Plan:
    current = plan.value("max_num_batched_tokens")
    if current is None:
        return plan.with_setting(
            "max_num_batched_tokens",
            Setting(HYBRID_MIN_BATCHED_TOKENS, "checkpoint", "hybrid linear attention floor"),
        )
    if current < HYBRID_MIN_BATCHED_TOKENS:
        origin = plan.settings["max_num_batched_tokens"].origin
        raise ConflictError(
            ["max_num_batched_tokens"],
            f"{origin}: max_num_batched_tokens {current} is below {HYBRID_MIN_BATCHED_TOKENS}, "
            "the minimum for this hybrid linear-attention checkpoint",
            f"set MAX_NUM_BATCHED_TOKENS to {HYBRID_MIN_BATCHED_TOKENS} or more",
        )
    return plan
