"""MinkowskiEngine 0.5.4 backend: the same ops and weight layout as :mod:`backend_torch`.

Weights are passed straight to MinkowskiEngine's autograd functions (its kernels are (K, C_in, C_out)
with the offset order of :func:`imcodec.learned.sparse.kernel_offsets`). All tensors of one network
evaluation share the coordinate manager of their input. Feature rows follow MinkowskiEngine's
coordinate-map order, which can differ from the torch backend's: compare results by coordinate.
"""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():  # "compiled with CPU_ONLY flag" is expected on CPU machines
    warnings.simplefilter("ignore", UserWarning)
    import MinkowskiEngine as ME
from MinkowskiEngineBackend._C import ConvolutionMode, CoordinateMapKey, CoordinateMapType

from imcodec.learned.sparse import SparseTensor

NAME = "minkowski"
_conv = ME.MinkowskiConvolutionFunction
_conv_t = ME.MinkowskiConvolutionTransposeFunction
_prune = ME.MinkowskiPruningFunction


class MECoords:
    """A coordinate map of a MinkowskiEngine coordinate manager: (manager, key, stride)."""

    __slots__ = ("manager", "key", "stride", "_coords")

    def __init__(self, manager: ME.CoordinateManager, key: CoordinateMapKey, stride: int):
        self.manager, self.key, self.stride, self._coords = manager, key, stride, None

    @property
    def coords(self) -> torch.Tensor:
        if self._coords is None:
            self._coords = self.manager.get_coordinates(self.key).to(torch.int32)
        return self._coords


def coords(cmap: MECoords) -> torch.Tensor:
    """(N, 4) int32 coordinates in feature-row order."""
    return cmap.coords


def same_map(a: MECoords, b: MECoords) -> bool:
    return a is b or (a.manager is b.manager and a.key == b.key)


def make_tensor(coords: torch.Tensor, feats: torch.Tensor, stride: int) -> SparseTensor:
    """SparseTensor in a new coordinate manager; rows reordered to the map's order."""
    map_type = CoordinateMapType.GPU if feats.is_cuda else CoordinateMapType.CPU
    manager = ME.CoordinateManager(D=3, coordinate_map_type=map_type)
    key, (unique_map, _) = manager.insert_and_map(coords, [stride] * 3, "")
    if unique_map.numel() != coords.shape[0]:
        raise ValueError("sparse_tensor: coordinates contain duplicate rows")
    unique_map = unique_map.long().to(feats.device)
    cmap = MECoords(manager, key, stride)
    cmap._coords = coords[unique_map]
    return SparseTensor(feats[unique_map], cmap, stride, NAME)


def _generator(kernel_size: int, stride: int = 1, dilation: int = 1, expand: bool = False,
               transpose: bool = False) -> ME.KernelGenerator:
    return ME.KernelGenerator(kernel_size=kernel_size, stride=stride, dilation=dilation,
                              is_transpose=transpose, expand_coordinates=expand, dimension=3)


def _run(fn, x: SparseTensor, weight: torch.Tensor, gen, out_key: CoordinateMapKey | None):
    cm = x.cmap
    out_key = out_key if out_key is not None else CoordinateMapKey(4)
    feats = fn.apply(x.feats.contiguous(), weight.contiguous(), gen, ConvolutionMode.DEFAULT,
                     cm.key, out_key, cm.manager)
    return feats, out_key


def conv(x: SparseTensor, weight: torch.Tensor, kernel_size: int, dilation: int) -> SparseTensor:
    feats, _ = _run(_conv, x, weight, _generator(kernel_size, 1, dilation), x.cmap.key)
    return x.replace(feats)


def conv_down(x: SparseTensor, weight: torch.Tensor, kernel_size: int) -> SparseTensor:
    feats, key = _run(_conv, x, weight, _generator(kernel_size, 2), None)
    return SparseTensor(feats, MECoords(x.cmap.manager, key, 2 * x.stride), 2 * x.stride, NAME)


def conv_transpose(x: SparseTensor, weight: torch.Tensor, kernel_size: int, target: SparseTensor) -> SparseTensor:
    if target.cmap.manager is not x.cmap.manager:
        raise ValueError("conv_transpose: target belongs to another coordinate manager")
    feats, _ = _run(_conv_t, x, weight, _generator(kernel_size, 2, transpose=True), target.cmap.key)
    return SparseTensor(feats, target.cmap, target.stride, NAME)


def conv_generative(x: SparseTensor, weight: torch.Tensor, kernel_size: int, stride: int) -> SparseTensor:
    out_stride = x.stride // stride
    feats, key = _run(_conv_t, x, weight, _generator(kernel_size, stride, expand=True, transpose=True), None)
    return SparseTensor(feats, MECoords(x.cmap.manager, key, out_stride), out_stride, NAME)


def prune(x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
    cm = x.cmap
    key = CoordinateMapKey(4)
    feats = _prune.apply(x.feats.contiguous(), mask, cm.key, key, cm.manager)
    return SparseTensor(feats, MECoords(cm.manager, key, x.stride), x.stride, NAME)
