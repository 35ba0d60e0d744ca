"""Sparse-tensor ops that dispatch to the tensor's backend (``x.backend``).

Convolution weights are (K, C_in, C_out) with K = kernel_size^3 in the order of
:func:`imcodec.learned.sparse.kernel_offsets`; bias is (C_out,) or None. Definitions (s = input
tensor stride, o = kernel offset):

* ``conv3d``           out[p] = sum_o W[o]^T in[p + o * s * dilation], out on x's coordinates
                       (submanifold convolution);
* ``conv3d_down``      stride 2: out on floor(p / 2s) * 2s, out[q] = sum_o W[o]^T in[q + o * s];
* ``conv_transpose3d`` out on ``target``'s coordinates (stride s / 2): out[p + o * s/2] += W[o]^T in[p];
* ``generative_conv_transpose3d`` the same, but the output coordinates are all p + o * s_out
  (new voxels), s_out = s / stride with stride 1 or 2.

Feature-only ops (activations, batch norm, pooling, concatenation) work the same on every backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imcodec.learned.sparse import SparseTensor, get_backend


def _check_weight(x: SparseTensor, weight: torch.Tensor, kernel_size: int) -> None:
    if weight.ndim != 3 or weight.shape[0] != kernel_size ** 3 or weight.shape[1] != x.channels:
        raise ValueError(f"weight must be ({kernel_size ** 3}, {x.channels}, C_out), got {tuple(weight.shape)}")


def _bias(x: SparseTensor, bias: torch.Tensor | None) -> SparseTensor:
    return x if bias is None else x.replace(x.feats + bias)


def conv3d(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None, kernel_size: int = 3,
           dilation: int = 1) -> SparseTensor:
    """Submanifold convolution (output coordinates = input coordinates)."""
    _check_weight(x, weight, kernel_size)
    if kernel_size == 1:
        return _bias(x.replace(x.feats @ weight[0]), bias)
    return _bias(get_backend(x.backend).conv(x, weight, kernel_size, dilation), bias)


def conv3d_down(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                kernel_size: int = 2) -> SparseTensor:
    """Stride-2 convolution to tensor stride 2s."""
    _check_weight(x, weight, kernel_size)
    return _bias(get_backend(x.backend).conv_down(x, weight, kernel_size), bias)


def conv_transpose3d(x: SparseTensor, weight: torch.Tensor, target: SparseTensor,
                     bias: torch.Tensor | None = None, kernel_size: int = 2) -> SparseTensor:
    """Stride-2 transposed convolution onto the coordinates of ``target`` (stride x.stride / 2)."""
    _check_weight(x, weight, kernel_size)
    if target.backend != x.backend:
        raise ValueError(f"target is a {target.backend} tensor, x a {x.backend} tensor")
    if target.stride * 2 != x.stride:
        raise ValueError(f"target stride {target.stride} must be half of the input stride {x.stride}")
    return _bias(get_backend(x.backend).conv_transpose(x, weight, kernel_size, target), bias)


def generative_conv_transpose3d(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                                kernel_size: int = 2, stride: int = 2) -> SparseTensor:
    """Transposed convolution that creates its output coordinates (every p + o * s_out)."""
    _check_weight(x, weight, kernel_size)
    if stride not in (1, 2) or x.stride % stride:
        raise ValueError(f"stride must be 1 or 2 and divide the tensor stride {x.stride}, got {stride}")
    return _bias(get_backend(x.backend).conv_generative(x, weight, kernel_size, stride), bias)


def prune(x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
    """Keep the coordinates (and feature rows) where ``mask`` (N,) bool is True."""
    if mask.shape != (len(x),) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be ({len(x)},) bool, got {tuple(mask.shape)} {mask.dtype}")
    return get_backend(x.backend).prune(x, mask)


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool mask of the k largest scores (all when k >= N); ties broken by torch.topk."""
    n = scores.shape[0]
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        mask[:] = True
    elif k > 0:
        mask[torch.topk(scores, k, sorted=False).indices] = True
    return mask


def prune_topk(x: SparseTensor, k: int, channel: int = 0) -> SparseTensor:
    """Keep the k rows with the largest feature ``channel`` (e.g. occupancy logits)."""
    return prune(x, topk_mask(x.feats[:, channel].detach(), k))


# --------------------------------------------------------------------------- feature-wise ops

def relu(x: SparseTensor) -> SparseTensor:
    return x.replace(F.relu(x.feats))


def leaky_relu(x: SparseTensor, slope: float = 0.01) -> SparseTensor:
    return x.replace(F.leaky_relu(x.feats, slope))


def sigmoid(x: SparseTensor) -> SparseTensor:
    return x.replace(torch.sigmoid(x.feats))


def batch_norm(x: SparseTensor, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> SparseTensor:
    """Batch norm over the N rows of (N, C) features."""
    return x.replace(F.batch_norm(x.feats, running_mean, running_var, weight, bias, training, momentum, eps))


def cat(*xs: SparseTensor) -> SparseTensor:
    """Concatenate the features of tensors on the same coordinates."""
    first = xs[0]
    for y in xs[1:]:
        if y.cmap is not first.cmap and not _same_map(first, y):
            raise ValueError("cat: tensors are on different coordinates")
    return first.replace(torch.cat([y.feats for y in xs], dim=1))


def add(x: SparseTensor, y: SparseTensor) -> SparseTensor:
    """Sum of two tensors on the same coordinates."""
    if y.cmap is not x.cmap and not _same_map(x, y):
        raise ValueError("add: tensors are on different coordinates")
    return x.replace(x.feats + y.feats)


def _same_map(x: SparseTensor, y: SparseTensor) -> bool:
    return get_backend(x.backend).same_map(x.cmap, y.cmap)


def batch_index(x: SparseTensor) -> torch.Tensor:
    """(N,) int64 batch index of each row."""
    return x.coords[:, 0].to(device=x.device, dtype=torch.int64)


def global_avg_pool(x: SparseTensor, batch_size: int | None = None) -> torch.Tensor:
    """(B, C) mean of the features of each batch item (zeros for an empty item)."""
    b = batch_index(x)
    nb = batch_size if batch_size is not None else (int(b.max()) + 1 if len(x) else 0)
    total = x.feats.new_zeros(nb, x.channels).index_add_(0, b, x.feats)
    count = torch.bincount(b, minlength=nb).clamp_(min=1).to(x.feats.dtype)
    return total / count[:, None]


def global_max_pool(x: SparseTensor, batch_size: int | None = None) -> torch.Tensor:
    """(B, C) max of the features of each batch item (zeros for an empty item)."""
    b = batch_index(x)
    nb = batch_size if batch_size is not None else (int(b.max()) + 1 if len(x) else 0)
    out = x.feats.new_zeros(nb, x.channels)
    return out.scatter_reduce(0, b[:, None].expand(-1, x.channels), x.feats, "amax", include_self=False)
