"""Modules that own the parameters of sparse ops (:mod:`imcodec.learned.functional` does the work).

Every convolution stores ``weight`` (K, C_in, C_out) with K = kernel_size^3 (offset order of
:func:`imcodec.learned.sparse.kernel_offsets`) and an optional ``bias`` (C_out,): the same state dict
runs on the torch and the MinkowskiEngine backends.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from imcodec.learned import functional as SF
from imcodec.learned.sparse import SparseTensor


class _ConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or kernel_size < 1:
            raise ValueError(f"bad convolution shape {in_channels}->{out_channels}, k={kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        k = kernel_size ** 3
        self.weight = nn.Parameter(torch.empty(k, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # He-uniform over the full kernel fan-in (sparse inputs use a fraction of it).
        bound = math.sqrt(6.0 / (in_channels * k))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}")


class Conv3d(_ConvBase):
    """Submanifold convolution (output on the input coordinates)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.dilation = dilation

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d(x, self.weight, self.bias, self.kernel_size, self.dilation)


class ConvDown(_ConvBase):
    """Stride-2 convolution (tensor stride s -> 2s)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d_down(x, self.weight, self.bias, self.kernel_size)


class ConvTranspose(_ConvBase):
    """Stride-2 transposed convolution onto existing coordinates (those of ``target``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias)

    def forward(self, x: SparseTensor, target: SparseTensor) -> SparseTensor:
        return SF.conv_transpose3d(x, self.weight, target, self.bias, self.kernel_size)


class GenerativeConvTranspose(_ConvBase):
    """Transposed convolution that creates output voxels (stride 1 or 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.generative_conv_transpose3d(x, self.weight, self.bias, self.kernel_size, self.stride)


class BatchNorm(nn.BatchNorm1d):
    """Batch norm over the feature rows of a sparse tensor."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


class ReLU(nn.Module):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.relu(x)
