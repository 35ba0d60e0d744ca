"""Sparse tensors and the choice of sparse-convolution engine.

A :class:`SparseTensor` is a set of integer voxel coordinates with a batch index and one feature row
per coordinate, at a *tensor stride* ``s``: its coordinates are multiples of ``s`` (MinkowskiEngine's
convention, Choy et al., CVPR 2019). Two backends implement the same ops with the same weight layout:

* ``torch``: pure PyTorch (coordinate hashing with sort/searchsorted, gather-GEMM-scatter
  convolutions with their own autograd), CPU and CUDA. Always available.
* ``minkowski``: MinkowskiEngine 0.5.4 when it is installed (``scripts/build_minkowski.sh``).

Model code never imports a backend: it calls :mod:`imcodec.learned.functional` (or the modules of
:mod:`imcodec.learned.layers`), which dispatch on ``x.backend``.

Kernel weights of every convolution are ``(K, C_in, C_out)`` float32 with the K = k^3 offsets in
MinkowskiEngine's order (see :func:`kernel_offsets`), so one state dict serves both backends.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import torch

from imcodec.errors import UsageError

BACKENDS = ("torch", "minkowski")
MINKOWSKI_HINT = ("MinkowskiEngine 0.5.4 is not installed; build it with "
                  "`bash scripts/build_minkowski.sh` (needs libopenblas-dev and ninja-build, ~11 min), "
                  "or use --engine torch")

_modules: dict[str, ModuleType] = {}


def kernel_offsets(kernel_size: int) -> torch.Tensor:
    """Offsets of a cubic kernel in units of (tensor stride x dilation): (k^3, 3) int64.

    Index ``i`` maps to (x, y, z) = (i % k, (i // k) % k, i // k^2), x varying fastest; odd sizes
    are centred (-(k-1)/2 .. (k-1)/2), even sizes span 0 .. k-1 (MinkowskiEngine 0.5 kernel_region).
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    r = torch.arange(kernel_size, dtype=torch.int64)
    if kernel_size % 2 == 1:
        r = r - kernel_size // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], dim=1)


def get_backend(name: str) -> ModuleType:
    """The backend module for ``name`` ('torch' or 'minkowski'); UsageError if unknown/unavailable."""
    if name in _modules:
        return _modules[name]
    if name == "torch":
        mod = importlib.import_module("imcodec.learned.backend_torch")
    elif name == "minkowski":
        if not minkowski_available():
            raise UsageError(MINKOWSKI_HINT)
        mod = importlib.import_module("imcodec.learned.backend_minkowski")
    else:
        raise UsageError(f"unknown sparse engine {name!r}; expected one of {', '.join(BACKENDS)}")
    _modules[name] = mod
    return mod


def minkowski_available() -> bool:
    """True when ``import MinkowskiEngine`` works."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import MinkowskiEngine  # noqa: F401
    except Exception:  # ImportError, or a broken build raising anything at import
        return False
    return True


def resolve_device(device: str) -> torch.device:
    """'cpu' or 'cuda[:i]' as a torch.device; UsageError when CUDA is asked for but absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; expected cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available in this PyTorch build/machine "
                         f"(torch {torch.__version__}); use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported device {device!r}; expected cpu or cuda")
    return dev


class SparseTensor:
    """Coordinates and features of a sparse voxel tensor.

    feats:   (N, C) float tensor, row i belongs to coordinate i.
    cmap:    the backend's coordinate-map handle (shared by tensors on the same coordinates).
    stride:  tensor stride s (coordinates are multiples of s).
    backend: 'torch' or 'minkowski'.
    ``coords`` gives the (N, 4) int32 [batch, x, y, z] coordinates.
    """

    __slots__ = ("feats", "cmap", "stride", "backend")

    def __init__(self, feats: torch.Tensor, cmap: Any, stride: int, backend: str):
        self.feats = feats
        self.cmap = cmap
        self.stride = int(stride)
        self.backend = backend

    @property
    def coords(self) -> torch.Tensor:
        return get_backend(self.backend).coords(self.cmap)

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    @property
    def channels(self) -> int:
        return int(self.feats.shape[1])

    def replace(self, feats: torch.Tensor) -> "SparseTensor":
        """Same coordinates, new (N, C') features."""
        if feats.shape[0] != self.feats.shape[0]:
            raise ValueError(f"replace: {feats.shape[0]} feature rows for {self.feats.shape[0]} coordinates")
        return SparseTensor(feats, self.cmap, self.stride, self.backend)

    def __repr__(self) -> str:
        return (f"SparseTensor(n={len(self)}, channels={self.channels}, stride={self.stride}, "
                f"backend={self.backend!r}, device={self.device})")


def sparse_tensor(coords: torch.Tensor, feats: torch.Tensor, backend: str = "torch",
                  stride: int = 1) -> SparseTensor:
    """Build a SparseTensor from unique coordinates.

    coords: (N, 4) integer [batch, x, y, z] (or (N, 3), batch 0), multiples of ``stride``,
            |x|, |y|, |z| < 2^16, batch in 0..511, no duplicate rows.
    feats:  (N, C) float32 on the same device.
    The feature rows keep the order of ``coords``.
    """
    if coords.ndim != 2 or coords.shape[1] not in (3, 4):
        raise ValueError(f"coords must be (N, 3) or (N, 4), got {tuple(coords.shape)}")
    if coords.shape[1] == 3:
        coords = torch.cat([coords.new_zeros(coords.shape[0], 1), coords], dim=1)
    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
        raise ValueError(f"feats must be ({coords.shape[0]}, C), got {tuple(feats.shape)}")
    if coords.dtype.is_floating_point:
        raise ValueError(f"coords must be integers, got {coords.dtype}")
    coords = coords.to(device=feats.device, dtype=torch.int32).contiguous()
    if coords.shape[0]:
        xyz = coords[:, 1:]
        if int(xyz.abs().max()) >= (1 << 16):
            raise ValueError(f"coordinates must satisfy |c| < 65536, got max |c| = {int(xyz.abs().max())}")
        b = coords[:, 0]
        if int(b.min()) < 0 or int(b.max()) > 511:
            raise ValueError(f"batch indices must be in 0..511, got {int(b.min())}..{int(b.max())}")
        if stride > 1 and bool((xyz % stride != 0).any()):
            raise ValueError(f"coordinates must be multiples of the tensor stride {stride}")
    return get_backend(backend).make_tensor(coords, feats, stride)


def coords_isin(query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(N,) bool: whether each (N, 4) [b, x, y, z] row of ``query`` occurs in (M, 4) ``ref``."""
    from imcodec.learned.backend_torch import encode

    ref_keys = torch.sort(encode(ref.to(query.device))).values
    q = encode(query)
    if ref_keys.numel() == 0:
        return torch.zeros(q.shape, dtype=torch.bool, device=q.device)
    pos = torch.searchsorted(ref_keys, q).clamp_(max=ref_keys.numel() - 1)
    return ref_keys[pos] == q
