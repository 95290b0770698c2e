"""Test-only vLLM general plugin: NVFP4 linear layers on vLLM's CPU platform.

Stock vLLM has no NVFP4 linear kernel for the CPU platform. On that platform
only, this plugin swaps NVFP4 linear kernel selection (ModelOpt and
compressed-tensors, W4A4 and W4A16) for a kernel that dequantizes the packed
FP4 weights once at load time with vLLM's own NVFP4 emulation utilities and
then runs a plain matmul. It changes nothing on any other platform.
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
    logger.info("sparkserve_nvfp4_cpu: NVFP4 linear layers dequantize at load on CPU")
