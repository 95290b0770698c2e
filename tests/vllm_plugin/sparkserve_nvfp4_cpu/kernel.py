"""An NVFP4 linear kernel that dequantizes weights at load time."""

from __future__ import annotations

import torch
from torch.nn import Parameter
from vllm.model_executor.kernels.linear.nvfp4.base import NvFp4LinearKernel, NvFp4LinearLayerConfig
from vllm.model_executor.layers.quantization.utils.nvfp4_emulation_utils import dequantize_to_dtype


class DequantizedNvFp4LinearKernel(NvFp4LinearKernel):
    """Packed FP4 + FP8 block scales + global scale → one dense weight, once."""

    @classmethod
    def is_supported(cls, compute_capability: int | None = None) -> tuple[bool, str | None]:
        return True, None

    @classmethod
    def can_implement(cls, config: NvFp4LinearLayerConfig) -> tuple[bool, str | None]:
        return True, None

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        dtype = torch.get_default_dtype()
        if not dtype.is_floating_point or dtype == torch.float32:
            dtype = torch.bfloat16
        dense = dequantize_to_dtype(
            layer.weight.data.view(torch.uint8),
            layer.weight_scale.data,
            layer.weight_global_scale.data.to(torch.float32),
            dtype,
            block_size=16,
            swizzle=False,
        )
        layer.weight = Parameter(dense, requires_grad=False)

    def apply_weights(
        self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.nn.functional.linear(x, layer.weight.to(x.dtype), bias)


def select_dequantized_kernel(use_a16: bool = False) -> NvFp4LinearKernel:
    return DequantizedNvFp4LinearKernel(NvFp4LinearLayerConfig())
