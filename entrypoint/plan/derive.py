"""Derive a launch profile from a checkpoint that no profile names (pure).

Input: the checkpoint's JSON metadata and file list (never a weight byte), the
device, the families table and the architectures the installed vLLM
implements. Output: a :class:`Derived` — a schema-valid :class:`Profile` plus,
for each value, the reason it was chosen, and notes on what was not derived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

from ..errors import ArchitectureUnsupportedError, CheckpointUnreadableError
from ..meta import CheckpointMeta
from .checkpoint import HYBRID_MIN_BATCHED_TOKENS, CheckpointInfo, describe
from .families import FamilyTable
from .fit import format_name
from .hardware import GB, Device
from .memory import MemoryInputs, plan_memory, vllm_default_batching
from .profile import Profile, QuantFormat
from .shape import ModelShape, model_shape

W4A4 = ("modelopt-nvfp4", "ct-nvfp4")
NVFP4 = (*W4A4, "modelopt-w4a16-nvfp4", "ct-nvfp4a16")
FALLBACK_MAX_MODEL_LEN = 8192  # when config.json states no maximum


@dataclass(frozen=True)
class ArchSupport:
    """The architectures the installed vLLM implements."""

    vllm_version: str
    architectures: frozenset[str]


@dataclass(frozen=True)
class Derived:
    name: str
    profile: Profile
    reasons: dict[str, str]  # profile field path ("vllm.max_model_len") → why
    notes: tuple[str, ...]  # what was not derived, and why
    family: str | None
    source: str  # where the metadata came from
    commit: str | None
    device_key: str

    def summary(self) -> dict[str, Any]:
        """What ``plan --json`` shows under ``derived``."""
        return {
            "from": self.source,
            "commit": self.commit,
            "family": self.family,
            "for_hardware": self.device_key,
            "notes": list(self.notes),
        }


def profile_name(model: str) -> str:
    """A profile name from a repo id or a directory: its last part, lowercased."""
    last = model.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-.") or "derived"


def _architecture(config: dict[str, Any], where: str, support: ArchSupport | None) -> tuple[str, list[str]]:
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise CheckpointUnreadableError(
            where,
            "config.json names no architectures",
            "point MODEL at a checkpoint saved by transformers (config.json lists its architectures)",
        )
    arch = archs[0]
    if support is None:
        return arch, [f"architecture {arch} not checked: vLLM's model registry could not be loaded"]
    if arch in support.architectures:
        return arch, []
    fix = (
        "the repo ships its own model code: pin a profile (spark-serve profiles derive), set "
        "vllm.trust_remote_code: true and a commit as revision, then serve it with PROFILE"
        if "auto_map" in config
        else "serve a checkpoint of an architecture vLLM implements, or an image with a newer vLLM"
    )
    raise ArchitectureUnsupportedError(where, arch, support.vllm_version, fix)


def _kv_scales(config: dict[str, Any], hf_quant: dict[str, Any] | None) -> str | None:
    """Where the checkpoint ships calibrated FP8 KV scales, if it does."""
    quant = (hf_quant or {}).get("quantization") or {}
    qcfg = config.get("quantization_config") or {}
    algo = quant.get("kv_cache_quant_algo") or qcfg.get("kv_cache_quant_algo")
    if isinstance(algo, str) and algo.upper().startswith("FP8"):
        return f"ModelOpt kv_cache_quant_algo {algo}"
    scheme = qcfg.get("kv_cache_scheme")
    if isinstance(scheme, dict) and scheme.get("num_bits") == 8:
        return "compressed-tensors kv_cache_scheme (8-bit)"
    return None


def _speculative_tokens(config: dict[str, Any], default: int) -> tuple[int, str]:
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    for cfg in (text, config):
        value = cfg.get("num_speculative_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, "config.json num_speculative_tokens"
    return default, "configs/families.yaml defaults"


class _Builder:
    """Collects the profile's fields and the reason for each."""

    def __init__(self) -> None:
        self.vllm: dict[str, Any] = {}
        self.variants: dict[str, dict[str, Any]] = {}
        self.reasons: dict[str, str] = {}
        self.notes: list[str] = []

    def set(self, name: str, value: Any, why: str) -> None:
        self.vllm[name] = value
        self.reasons[f"vllm.{name}"] = why

    def variant(self, name: str, description: str, vllm: dict[str, Any], why: str) -> None:
        self.variants[name] = {"description": description, "vllm": vllm}
        self.reasons[f"variants.{name}"] = why
        for key in vllm:
            self.reasons[f"variants.{name}.vllm.{key}"] = why


def _memory_inputs(
    shape: ModelShape, meta: CheckpointMeta, device: Device, vllm: dict[str, Any], max_len: int
) -> MemoryInputs:
    seqs, tokens = vllm_default_batching(device)
    return MemoryInputs(
        shape=shape,
        weights=meta.weights,
        kv_cache_dtype=vllm.get("kv_cache_dtype"),
        max_model_len=max_len,
        max_num_seqs=seqs,
        max_num_batched_tokens=vllm.get("max_num_batched_tokens") or tokens,
        language_model_only=False,
        mtp=False,
        prefix_caching=vllm.get("enable_prefix_caching") is not False,
        utilization=None,
        utilization_is_users=False,
        kv_cache_memory_bytes=None,
        reserve_bytes=device.reserve_bytes,
    )


def fit_context(
    shape: ModelShape, meta: CheckpointMeta, device: Device, vllm: dict[str, Any], table: FamilyTable
) -> tuple[int, str, int]:
    """(max_model_len, reason, bytes needed at it): the checkpoint's maximum, lowered in
    steps until the configured number of sequences at full length fit this device."""
    want, step = table.defaults.sequences_at_full_context, table.defaults.context_step
    top = shape.max_position_embeddings or FALLBACK_MAX_MODEL_LEN
    said = "config.json max_position_embeddings" if shape.max_position_embeddings else "no maximum stated"

    def room_for(length: int) -> tuple[bool, int]:
        memory = plan_memory(device, _memory_inputs(shape, meta, device, vllm, length))
        return memory.fits and memory.max_concurrent_sequences >= want, memory.needed_bytes

    fits, needed = room_for(top)
    if fits:
        return top, f"{said} {top}; {want} sequences at full length fit {device.key}", needed
    low, high = 0, top // step  # largest k with room_for(k * step), by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if room_for(mid * step)[0]:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        return top, f"{said} {top} (nothing shorter fits {want} sequences on {device.key} either)", needed
    length = low * step
    return (
        length,
        f"{said} {top} lowered to fit {want} sequences at full length in {device.key}'s KV budget",
        room_for(length)[1],
    )


def _quantization(info: CheckpointInfo, b: _Builder, device: Device, meta: CheckpointMeta) -> str:
    fmt = info.quant_format
    known = fmt if fmt in get_args(QuantFormat) else "other"
    b.reasons["quantization"] = f"detected: {format_name(fmt)}"
    if fmt == "none":
        b.notes.append(
            f"not NVFP4: unquantized weights ({meta.weights.total / GB:.1f} GB), served as they are"
        )
    elif known == "other":
        b.notes.append(f"not NVFP4: {fmt.removeprefix('other:')}; vLLM detects the format and serves it")
    if fmt in W4A4 and device.nvfp4_linear_backend:
        why = f"W4A4 NVFP4 on {device.key} (configs/hardware.yaml)"
        b.set("linear_backend", device.nvfp4_linear_backend, why)
        if info.is_moe and device.nvfp4_moe_backend:
            b.set("moe_backend", device.nvfp4_moe_backend, f"MoE experts in {why}")
    elif fmt in NVFP4 and fmt not in W4A4:
        b.notes.append("weight-only NVFP4: vLLM chooses its weight-only kernel, no backend is forced")
    elif fmt in W4A4:
        b.notes.append(f"{device.key} has no NVFP4 backend in configs/hardware.yaml: vLLM chooses")
    return known


def _lacks(meta: CheckpointMeta, tokens: list[str]) -> list[str]:
    """Tokens a parser needs that the tokenizer's listed added tokens do not hold."""
    if meta.special_tokens is None:
        return []  # not listed: vLLM checks at start
    return [t for t in tokens if t not in meta.special_tokens]


def _parsers(config: dict[str, Any], meta: CheckpointMeta, table: FamilyTable, b: _Builder) -> str | None:
    found = table.family_of(config)
    model_type = config.get("model_type", "unknown")
    if meta.chat_template is None:
        b.notes.append(
            "no chat template in tokenizer_config.json or chat_template.jinja: /v1/chat/completions "
            "will fail; use /v1/completions or give vLLM --chat-template in VLLM_EXTRA_ARGS"
        )
    if found is None:
        b.notes.append(f"no parsers: model_type {model_type} is not a family in configs/families.yaml")
        family_key, family = None, None
    else:
        family_key, family = found
    source = f"family {family_key} (configs/families.yaml)"
    reasoning, tools = (family.reasoning_parser, family.tool_call_parser) if family else (None, None)
    needs = {
        "reasoning": family.reasoning_tokens if family else [],
        "tool": family.tool_call_tokens if family else [],
    }
    thinks = bool(meta.chat_template and "<think>" in meta.chat_template)
    if not reasoning and thinks and table.defaults.think_tag_reasoning_parser:
        reasoning = table.defaults.think_tag_reasoning_parser
        needs["reasoning"] = table.defaults.think_tag_tokens
        source = "the chat template opens a <think> block (configs/families.yaml defaults)"
    for kind, name in (("reasoning", reasoning), ("tool", tools)):
        missing = _lacks(meta, needs[kind]) if name else []
        if missing:
            b.notes.append(
                f"no {kind} parser: {name} needs {', '.join(missing)}, which the tokenizer does not have"
            )
    if reasoning and not _lacks(meta, needs["reasoning"]):
        b.set("reasoning_parser", reasoning, source)
    if tools and not _lacks(meta, needs["tool"]):
        b.variant(
            "tools",
            f"OpenAI tool calling with vLLM's {tools} tool parser.",
            {"enable_auto_tool_choice": True, "tool_call_parser": tools},
            f"family {family_key} (configs/families.yaml)",
        )
    elif family is not None and not tools:
        b.notes.append(f"no tool parser: family {family_key} names none in configs/families.yaml")
    return family_key


def _variants(info: CheckpointInfo, meta: CheckpointMeta, table: FamilyTable, b: _Builder) -> None:
    if info.has_vision:
        b.variant(
            "text-only",
            "Skip the vision encoder; frees its memory for KV cache.",
            {"language_model_only": True},
            "vision_config in config.json: a vision tower (the default serves images too)",
        )
    if info.mtp_layers and meta.weights.named and not meta.weights.mtp:
        b.notes.append(
            f"no mtp variant: config.json declares {info.mtp_layers} MTP layer(s) but the weights hold none"
        )
    elif info.mtp_layers:
        count, where = _speculative_tokens(meta.config, table.defaults.mtp_num_speculative_tokens)
        b.variant(
            "mtp",
            "MTP speculative decoding with the checkpoint's own MTP layers.",
            {"speculative_config": {"method": "mtp", "num_speculative_tokens": count}},
            f"{info.mtp_layers} MTP layer(s) in the checkpoint; {count} draft tokens ({where})",
        )


def derive(
    meta: CheckpointMeta,
    *,
    model: str,
    repo: str | None,
    revision: str,
    device: Device,
    table: FamilyTable,
    support: ArchSupport | None,
) -> Derived:
    """A profile for ``model`` (a repo id or a directory) on ``device``."""
    where = model if repo is None else f"{repo}@{(meta.commit or revision)[:12]}"
    config = meta.config
    _, arch_notes = _architecture(config, where, support)
    info = describe(config, meta.hf_quant, path=where, has_weights=meta.weights.total > 0)
    shape = model_shape(config)
    b = _Builder()
    b.notes.extend(arch_notes)
    quantization = _quantization(info, b, device, meta)
    scales = _kv_scales(config, meta.hf_quant)
    if scales:
        b.set("kv_cache_dtype", "fp8", f"calibrated KV scales: {scales}")
    else:
        b.notes.append("KV cache dtype auto: the checkpoint ships no calibrated KV scales")
    if info.is_hybrid:
        floor, default = HYBRID_MIN_BATCHED_TOKENS, vllm_default_batching(device)[1]
        b.set(
            "max_num_batched_tokens",
            max(floor, default),
            f"hybrid: {shape.linear_layers} linear-attention layers need >= {floor} "
            f"(vLLM's default on {device.key}: {default})",
        )
    family = _parsers(config, meta, table, b)
    _variants(info, meta, table, b)
    max_len, why, needed = fit_context(shape, meta, device, b.vllm, table)
    b.set("max_model_len", max_len, why)
    b.set("shutdown_timeout", table.defaults.shutdown_timeout, "configs/families.yaml defaults")
    served = (repo or model).rstrip("/").rsplit("/", 1)[-1]
    b.reasons["served_model_name"] = "the repo's name" if repo else "the directory's name"
    nvfp4 = info.quant_format in NVFP4
    b.reasons["hardware.min_memory_gb"] = f"weights + allowance + one sequence at {max_len} on {device.key}"
    b.reasons["hardware.min_compute_capability"] = (
        "NVFP4 runs weight-only through vLLM's Marlin kernels from SM 8.0" if nvfp4 else "vLLM's minimum"
    )
    profile = Profile.model_validate(
        {
            "description": f"Derived from {where} ({config.get('architectures', ['?'])[0]}, "
            f"{format_name(info.quant_format)}) for {device.key}.",
            "repo": repo or f"local/{profile_name(model)}",
            "revision": revision,
            "served_model_name": served,
            "quantization": quantization,
            "hardware": {
                "min_memory_gb": max(-(-needed // GB), 1),
                "min_compute_capability": 8.0 if nvfp4 else 7.0,
            },
            "vllm": b.vllm,
            "variants": b.variants,
        }
    )
    return Derived(
        name=profile_name(repo or model),
        profile=profile,
        reasons=b.reasons,
        notes=tuple(b.notes),
        family=family,
        source=meta.origin,
        commit=meta.commit,
        device_key=device.key,
    )
