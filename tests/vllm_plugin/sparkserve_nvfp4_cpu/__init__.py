"""Test-only vLLM general plugin: NVFP4 linear layers on vLLM's CPU platform.

Stock vLLM has no NVFP4 linear kernel for the CPU platform. On that platform
only, this plugin swaps NVFP4 linear kernel selection (ModelOpt and
compressed-tensors, W4A4 and W4A16) for a kernel that dequantizes the packed
FP4 weights once at load time with vLLM's own NVFP4 emulation utilities and
then runs a plain matmul. It changes nothing on any other platform.

STAND-IN difference, also CPU only: attention runs vLLM's AVX-512 kernel ("vec"),
never its AMX one. Inside this machine's virtual machines the AMX kernel dies with
SIGILL on a chunked prefill and on long decodes (``cpu_attention_with_kv_cache``),
while AMX is advertised; the AVX-512 kernel is what vLLM runs on a CPU without AMX.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# Modules that bind ``init_nvfp4_linear_kernel`` by name at import time.
_SELECTOR_MODULES = (
    "vllm.model_executor.layers.quantization.modelopt",
    "vllm.model_executor.layers.quantization.compressed_tensors.schemes.compressed_tensors_w4a4_nvfp4",
)


def register() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    import importlib

    from .kernel import select_dequantized_kernel

    for name in _SELECTOR_MODULES:
        module = importlib.import_module(name)
        module.init_nvfp4_linear_kernel = select_dequantized_kernel  # type: ignore[attr-defined]
    _attention_without_amx()
    logger.info("sparkserve_nvfp4_cpu: NVFP4 linear layers dequantize at load on CPU")


def _attention_without_amx() -> None:
    from vllm.v1.attention.backends import cpu_attn

    chosen = cpu_attn._get_attn_isa
    if getattr(chosen, "without_amx", False):
        return

    def without_amx(*args: object, **kwargs: object) -> str:
        isa = chosen(*args, **kwargs)  # type: ignore[arg-type]
        return "vec" if isa == "amx" else isa

    without_amx.without_amx = True  # type: ignore[attr-defined]
    cpu_attn._get_attn_isa = without_amx
    logger.info("sparkserve_nvfp4_cpu: CPU attention without AMX (STAND-IN, see the module docstring)")
