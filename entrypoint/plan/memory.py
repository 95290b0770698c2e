"""The memory planner (pure): weights + KV + allowance against the device budget.

Budget. Dedicated memory: ``gpu_memory_utilization`` × the GPU's memory, as
vLLM itself computes it. Unified memory (GB10) and the host: MemTotal less a
reserve for the OS, Docker and the sidecar (``MEMORY_RESERVE_GB``), capped at
the profile's ``gpu_memory_utilization`` share when the profile sets one.

Allowance, for what vLLM takes beyond weights and KV: the device's measured
runtime overhead (hardware table: CUDA context, workspaces, CUDA graphs,
torch.compile), plus activations of one step at ``max_num_batched_tokens``
(4 hidden-size and 2 MLP-width activations per token, in the model dtype),
plus the sampler's float32 logits and probabilities for ``max_num_seqs``.

KV per token: only full-attention layers (and the MTP draft's layers when MTP
is on) hold KV; sliding-window layers hold at most their window per sequence
and linear-attention layers a fixed state per sequence.

On unified memory vLLM's profiling cannot tell the model's memory from the
rest of the system, so the plan passes an explicit ``--kv-cache-memory-bytes``
(vLLM 0.32 then skips profiling). With a KV size set, vLLM uses utilization only
in its start check, ``ceil(total × utilization) <= free`` (vLLM reads MemAvailable
on an integrated GPU), and it reads that after its API server, engine core and
CUDA context exist (the device's ``precheck_bytes``). So the launcher sets the
utilization at start (:func:`start_utilization`): MemAvailable at the memory
guard less that pre-check use, as a share of the total, to 1/10,000 and rounded
down. The plan shows the value it would be at the budget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..meta import WeightSizes
from .hardware import GB, Device
from .shape import ModelShape

UTILIZATION_STEPS = 10_000  # the plan's utilization is a multiple of 1/10,000
VLLM_DEFAULT_UTILIZATION = 0.92  # vllm/config/cache.py CacheConfig.gpu_memory_utilization
# vLLM 0.32's paging on CUDA (read from its source): the attention backends'
# kernel block is a multiple of 16 tokens (128 for MLA beside linear attention);
# a sliding-window layer holds its window plus what two in-flight batches add.
BLOCK_TOKENS = 16
MLA_HYBRID_BLOCK_TOKENS = 128
IN_FLIGHT_BATCHES = 2


def vllm_default_batching(device: Device) -> tuple[int, int]:
    """vLLM 0.32's (max_num_seqs, max_num_batched_tokens) for the API server when
    unset, by device memory (EngineArgs._set_default_max_num_seqs_and_batched_tokens_args)."""
    if device.total_bytes >= 160 * (1 << 30):
        return 1024, 16384
    if device.total_bytes >= 70 * (1 << 30) and "a100" not in device.name.lower():
        return 1024, 8192
    return 256, 2048


@dataclass(frozen=True)
class MemoryInputs:
    shape: ModelShape
    weights: WeightSizes
    kv_cache_dtype: str | None
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    language_model_only: bool
    mtp: bool
    utilization: float | None  # the plan's gpu_memory_utilization, if any
    utilization_is_users: bool  # set through the environment or a flag
    kv_cache_memory_bytes: int | None  # set explicitly
    reserve_bytes: int
    num_speculative_tokens: int = 0  # the MTP draft's tokens per step (with mtp)
    prefix_caching: bool = True  # vLLM's default; for linear attention it selects "align" mode
    nodes: int = 1  # Sparks the engine spans (CLUSTER_NODES): each holds 1/nodes of weights and KV
    parallel: str = "tensor"  # tensor: the nodes read their shares at once; pipeline: one after another
    measured_non_kv: int | None = None  # an earlier start's memory beyond weights and KV, with margin
    measured_precheck: int | None = None  # an earlier start's pre-check use, with margin
    measured_source: str = ""  # "measured <date> (start <id>)"


@dataclass(frozen=True)
class MemoryPlan:
    hardware: str
    memory_kind: str
    device_bytes: int
    reserve_bytes: int
    budget_bytes: int
    budget_basis: str
    weights_bytes: int
    allowance_bytes: int
    kv_bytes_per_token: int
    state_bytes_per_sequence: int
    kv_cache_bytes: int
    kv_cache_tokens: int
    max_model_len: int
    max_num_seqs: int
    max_concurrent_sequences: int
    needed_bytes: int  # weights + allowance + one sequence at max_model_len
    fits: bool
    explicit_kv: bool  # the plan passes --kv-cache-memory-bytes
    gpu_memory_utilization: float | None  # what the plan passes (None: leave it)
    decode_ceiling_tokens_per_s: float | None
    decode_ceiling_at_max_len_tokens_per_s: float | None
    weights_source: str
    bandwidth_bytes_per_s: float | None = None
    decode_read_bytes: int = 0  # weight bytes one decode step reads (MoE: the routed share of experts)
    decode_expert_bytes: int = 0  # the routed experts' bytes (one node's share)
    expert_share: float = 0.0  # experts per token ÷ experts: one sequence's share
    speculative_tokens: int = 0  # MTP draft tokens per step
    block_tokens: int = BLOCK_TOKENS  # vLLM's attention block (raised for linear-attention state)
    precheck_bytes: int = 0  # what vLLM holds when its start check reads free memory
    utilization_at_start: bool = False  # the launcher sets it from MemAvailable at the guard
    allowance_source: str = "hardware table"  # or "measured <date> (start <id>)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def kv_bytes(kv_cache_dtype: str | None, shape: ModelShape) -> int:
    return 1 if (kv_cache_dtype or "auto").startswith("fp8") else shape.dtype_bytes


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Paging:
    """How vLLM pages one sequence's cache: the attention block in tokens and, for
    linear-attention layers, one state block (padded to the attention page) and how
    many each sequence holds."""

    block_tokens: int
    state_page_bytes: int
    state_blocks: int


def paging(shape: ModelShape, inputs: MemoryInputs, kv_per_layer_token: int) -> Paging:
    """vLLM's hybrid page unification (``Platform._align_hybrid_block_size``): the
    attention block grows in kernel-block steps until its page holds one linear
    layer's state, which is then padded to that page. With prefix caching, vLLM's
    "align" mode keeps 2 state blocks per layer and sequence, else 1; MTP adds one
    per speculative token (``MambaSpec.max_memory_usage_bytes``)."""
    if not shape.linear_layers:
        return Paging(BLOCK_TOKENS, 0, 0)
    speculative = inputs.num_speculative_tokens if inputs.mtp else 0
    state = shape.linear_state_bytes(speculative)
    step = MLA_HYBRID_BLOCK_TOKENS if shape.mla_dim else BLOCK_TOKENS
    block = BLOCK_TOKENS
    if kv_per_layer_token and shape.full_attention_layers:
        block = max(block, step * _cdiv(state, step * kv_per_layer_token))
        state = max(state, block * kv_per_layer_token)
    return Paging(block, state, (2 if inputs.prefix_caching else 1) + speculative)


def per_token_and_sequence(
    shape: ModelShape, inputs: MemoryInputs, kv_dtype: str | None
) -> tuple[int, int, Paging]:
    """(KV bytes per token, fixed bytes per sequence at ``max_model_len``, the paging),
    as vLLM 0.32's KV cache specs size them: full-attention layers (and the MTP
    draft's) hold every token in whole blocks, sliding-window layers their window plus
    the in-flight tokens, linear-attention layers their state blocks. The rounding of
    ``max_model_len`` up to whole blocks is part of the fixed bytes."""
    per_layer = shape.attention_bytes_per_token(kv_bytes(kv_dtype, shape))
    pages = paging(shape, inputs, per_layer)
    block, length = pages.block_tokens, inputs.max_model_len
    layers = shape.full_attention_layers + (shape.mtp_layers if inputs.mtp else 0)
    rounding = (_cdiv(length, block) * block - length) * layers * per_layer
    per_sequence = rounding + shape.linear_layers * pages.state_blocks * pages.state_page_bytes
    if shape.sliding_layers:
        held = min(
            (shape.sliding_window or length) - 1 + IN_FLIGHT_BATCHES * inputs.max_num_batched_tokens, length
        )
        per_sequence += shape.sliding_layers * (_cdiv(held, block) + 1) * block * per_layer
    return layers * per_layer, per_sequence, pages


def start_utilization(available: int, precheck: int, total: int) -> float:
    """The utilization that passes vLLM's start check, ``ceil(total × u) <= free``, when
    ``available`` bytes are free before the engine starts and it holds ``precheck`` of
    them by its check: (available − precheck) ÷ total to 1/10,000, rounded down (at
    least 1/10,000, at most 1)."""
    room = max(available - precheck, 0)
    steps = min((room * UTILIZATION_STEPS) // total, UTILIZATION_STEPS)
    if steps > 1 and math.ceil(total * (steps / UTILIZATION_STEPS)) > room:
        steps -= 1  # vLLM multiplies in floating point
    return max(steps, 1) / UTILIZATION_STEPS


def allowance(shape: ModelShape, device: Device, seqs: int, tokens: int) -> int:
    width = max(shape.intermediate_size, shape.experts_per_token * shape.moe_intermediate_size)
    activations = tokens * (4 * shape.hidden_size + 2 * width) * shape.dtype_bytes
    logits = seqs * shape.vocab_size * 4 * 2
    return device.overhead_bytes + activations + logits


def budget(
    device: Device, utilization: float | None, utilization_is_users: bool, reserve_bytes: int
) -> tuple[int, str]:
    """The bytes the engine may plan with on ``device``, and why."""
    total = device.total_bytes
    if device.memory == "dedicated" or utilization_is_users:
        util = utilization or VLLM_DEFAULT_UTILIZATION
        return int(total * util), f"gpu_memory_utilization {util:g} × {total / GB:.1f} GB"
    room = total - reserve_bytes
    basis = f"{total / GB:.1f} GB {device.memory} − {reserve_bytes / GB:.1f} GB reserve"
    if utilization is not None and utilization * total < room:
        return int(utilization * total), f"profile's gpu_memory_utilization {utilization:g} share"
    return room, basis


def _budget(device: Device, inputs: MemoryInputs) -> tuple[int, str]:
    return budget(device, inputs.utilization, inputs.utilization_is_users, inputs.reserve_bytes)


def decode_read(shape: ModelShape, weights: WeightSizes) -> int:
    """Weight bytes one decode step reads: the loaded dense weights, less the input
    embedding table unless the lm_head is tied to it (a step looks up a few of its
    rows; an untied lm_head is read whole), plus, for MoE, the routed share of experts."""
    dense = weights.language_model - weights.experts - weights.skipped
    if not shape.tied_embeddings:
        dense -= weights.embedding
    routed: float = weights.experts
    if shape.num_experts:
        routed = weights.experts * shape.experts_per_token / shape.num_experts
    return int(dense + routed)


def experts_touched(share: float, sequences: int) -> float:
    """The expected fraction of a layer's experts that ``sequences`` sequences touch in
    one step, each routing to ``share`` of them: 1 − (1 − share)^sequences."""
    return 1 - (1 - share) ** max(sequences, 1)


def ceiling_at(
    bandwidth: float | None,
    read: int,
    kv_token: int,
    context: int,
    sequences: int = 1,
    experts: int = 0,
    share: float = 0.0,
    tokens_per_step: float = 1.0,
) -> float | None:
    """Aggregate decode tokens/s ``sequences`` sequences at ``context`` tokens can reach at most:
    each step reads the weights once (``read`` holds one sequence's routed share of the
    ``experts`` bytes; more sequences touch more of them) and every sequence's KV, and
    yields ``tokens_per_step`` tokens per sequence (more than one with MTP)."""
    touched = experts * (experts_touched(share, sequences) - share) if share else 0
    per_step = read + touched + sequences * kv_token * context
    if bandwidth is None or per_step <= 0:
        return None
    return round(bandwidth * sequences * tokens_per_step / per_step, 1)


def _per_node(value: int, nodes: int) -> int:
    """One node's share of ``value``, rounded up."""
    return _cdiv(value, nodes)


def decode_ceiling(
    shape: ModelShape, weights: WeightSizes, device: Device, kv_token: int, context: int, nodes: int = 1
) -> float | None:
    """Tokens/s one sequence can reach at most: bandwidth ÷ bytes read per token. ``kv_token``
    is one node's share; with tensor parallelism over ``nodes`` each reads its share of the
    weights at once (pass nodes=1 for pipeline parallelism, whose stages run in turn, with the
    whole KV)."""
    read = _per_node(decode_read(shape, weights), nodes)
    return ceiling_at(device.bandwidth_bytes_per_s, read, kv_token, context)


def plan_memory(device: Device, inputs: MemoryInputs) -> MemoryPlan:
    shape, weights = inputs.shape, inputs.weights
    weights_bytes = weights.total - weights.skipped - (weights.vision if inputs.language_model_only else 0)
    weights_bytes -= 0 if inputs.mtp else weights.mtp
    whole_token, whole_seq, pages = per_token_and_sequence(shape, inputs, inputs.kv_cache_dtype)
    nodes = max(inputs.nodes, 1)
    weights_bytes = _per_node(weights_bytes, nodes)
    per_token, per_seq = _per_node(whole_token, nodes), _per_node(whole_seq, nodes)
    if shape.mla_dim:  # vLLM copies MLA's latent KV to every tensor-parallel rank
        per_token, per_seq = whole_token, whole_seq
    tensor = inputs.parallel == "tensor"
    ceiling_nodes, ceiling_kv = (nodes, per_token) if tensor else (1, whole_token)
    extra = allowance(shape, device, inputs.max_num_seqs, inputs.max_num_batched_tokens)
    if inputs.measured_non_kv is not None:
        extra = inputs.measured_non_kv
    precheck = device.precheck_bytes if inputs.measured_precheck is None else inputs.measured_precheck
    budget, basis = _budget(device, inputs)
    one_sequence = inputs.max_model_len * per_token + per_seq
    needed = weights_bytes + extra + one_sequence
    room = max(budget - weights_bytes - extra, 0)
    all_sequences = inputs.max_num_seqs * one_sequence
    explicit = (
        inputs.kv_cache_memory_bytes is None
        and device.memory != "dedicated"
        and not inputs.utilization_is_users
        and one_sequence > 0  # a shape with no KV (no layers read): leave the size to vLLM
    )
    if inputs.kv_cache_memory_bytes is not None:
        kv_cache = inputs.kv_cache_memory_bytes
    elif explicit:
        kv_cache = min(room, all_sequences)  # on shared memory, take no more than the sequences can use
    else:
        kv_cache = room
    # On shared memory utilization only gates vLLM's start check once the KV size is
    # given (by the plan or by the user): set at start from what is available then.
    derive = (explicit or inputs.kv_cache_memory_bytes is not None) and (
        device.memory != "dedicated" and not inputs.utilization_is_users
    )
    utilization: float | None = None
    if derive and device.total_bytes:
        utilization = start_utilization(budget, precheck, device.total_bytes)
    return MemoryPlan(
        hardware=device.key,
        memory_kind=device.memory,
        device_bytes=device.total_bytes,
        reserve_bytes=inputs.reserve_bytes if device.memory != "dedicated" else 0,
        budget_bytes=budget,
        budget_basis=basis,
        weights_bytes=weights_bytes,
        allowance_bytes=extra,
        kv_bytes_per_token=per_token,
        state_bytes_per_sequence=per_seq,
        kv_cache_bytes=kv_cache,
        kv_cache_tokens=kv_cache // per_token if per_token else 0,
        max_model_len=inputs.max_model_len,
        max_num_seqs=inputs.max_num_seqs,
        max_concurrent_sequences=kv_cache // one_sequence if one_sequence else 0,
        needed_bytes=needed,
        fits=needed <= budget,
        explicit_kv=explicit,
        gpu_memory_utilization=utilization,
        decode_ceiling_tokens_per_s=decode_ceiling(shape, weights, device, ceiling_kv, 0, ceiling_nodes),
        decode_ceiling_at_max_len_tokens_per_s=decode_ceiling(
            shape, weights, device, ceiling_kv, inputs.max_model_len, ceiling_nodes
        ),
        weights_source=weights.source,
        bandwidth_bytes_per_s=device.bandwidth_bytes_per_s,
        decode_read_bytes=_per_node(decode_read(shape, weights), ceiling_nodes),
        decode_expert_bytes=_per_node(weights.experts, ceiling_nodes) if shape.num_experts else 0,
        expert_share=shape.experts_per_token / shape.num_experts if shape.num_experts else 0.0,
        speculative_tokens=inputs.num_speculative_tokens if inputs.mtp else 0,
        block_tokens=pages.block_tokens,
        precheck_bytes=precheck,
        utilization_at_start=utilization is not None and device.memory == "unified",
        allowance_source=inputs.measured_source if inputs.measured_non_kv is not None else "hardware table",
    )


def what_would_fit(device: Device, inputs: MemoryInputs, plan: MemoryPlan) -> list[str]:
    """Suggestions, each checked by planning again, for a plan that does not fit."""
    ideas: list[str] = []
    per_token, per_seq = plan.kv_bytes_per_token, plan.state_bytes_per_sequence
    spare = plan.budget_bytes - plan.weights_bytes - plan.allowance_bytes - per_seq
    if per_token and spare > 0:
        longest = spare // per_token
        if longest >= 256:
            ideas.append(f"MAX_MODEL_LEN={int(longest // 256 * 256)} or less")
    if inputs.max_num_seqs > 8:
        fewer = plan_memory(
            device,
            _with(inputs, max_num_seqs=8, max_num_batched_tokens=min(inputs.max_num_batched_tokens, 2048)),
        )
        if fewer.fits:
            ideas.append("MAX_NUM_SEQS=8")
    if (
        not (inputs.kv_cache_dtype or "auto").startswith("fp8")
        and plan_memory(device, _with(inputs, kv_cache_dtype="fp8")).fits
    ):
        ideas.append("KV_CACHE_DTYPE=fp8")
    text_only = _with(inputs, language_model_only=True)
    if inputs.weights.vision and not inputs.language_model_only and plan_memory(device, text_only).fits:
        ideas.append("a text-only variant (language_model_only)")
    return ideas or ["a smaller checkpoint (another profile), or hardware with more memory"]


def _with(inputs: MemoryInputs, **changes: Any) -> MemoryInputs:
    return MemoryInputs(**{**asdict(inputs), "shape": inputs.shape, "weights": inputs.weights, **changes})
