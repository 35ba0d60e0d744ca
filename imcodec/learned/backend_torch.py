"""Pure-PyTorch sparse-convolution backend (CPU and CUDA, autograd).

Coordinates [b, x, y, z] are packed into one int64 key: b in bits 54..62 and x, y, z biased by 2^17
in 18 bits each, so key(c + o) = key(c) + delta(o) and a neighbour query is an addition. A
coordinate map keeps its keys sorted; lookups are ``torch.searchsorted``.

A kernel map is a table ``T`` of shape (rows, K) int64 whose entries index the other side's rows,
with the other side's row count as the "missing" sentinel. Two convolution forms use it:

* gather form (submanifold and strided convolution): ``out[j] = sum_k in[T[j, k]] @ W[k]``,
  computed block by block as one GEMM on the gathered (rows, K * C_in) matrix;
* scatter form (transposed and generative transposed convolution):
  ``out[T[i, k]] += in[i] @ W[k]``, a GEMM followed by ``index_add_``.

Each form's backward pass is the other form on the same table, so both are written once as
autograd Functions that never keep the gathered matrix (it is recomputed block by block).
"""

from __future__ import annotations

import itertools

import torch

from imcodec.learned.sparse import SparseTensor, kernel_offsets

NAME = "torch"
_BIAS = 1 << 17
_FIELD = (1 << 18) - 1
_BLOCK_ELEMS = 1 << 23  # floats per gathered block (32 MB)
_ids = itertools.count()


# ------------------------------------------------------------------------------------ coordinates

def encode(coords: torch.Tensor) -> torch.Tensor:
    """(N, 4) int [b, x, y, z] -> (N,) int64 keys (|x|, |y|, |z| < 2^17, 0 <= b < 512)."""
    c = coords.to(torch.int64)
    return ((c[:, 0] << 54) | ((c[:, 1] + _BIAS) << 36) | ((c[:, 2] + _BIAS) << 18)
            | (c[:, 3] + _BIAS))


def decode(keys: torch.Tensor) -> torch.Tensor:
    """(N,) int64 keys -> (N, 4) int32 [b, x, y, z]."""
    out = torch.stack([keys >> 54, ((keys >> 36) & _FIELD) - _BIAS,
                       ((keys >> 18) & _FIELD) - _BIAS, (keys & _FIELD) - _BIAS], dim=1)
    return out.to(torch.int32)


def key_delta(kernel_size: int, scale: int, device: torch.device) -> torch.Tensor:
    """(K,) int64 key increments of the kernel offsets times ``scale``."""
    o = kernel_offsets(kernel_size).to(device) * scale
    return o[:, 0] * (1 << 36) + o[:, 1] * (1 << 18) + o[:, 2]


class CoordMap:
    """Unique coordinates at one tensor stride, hashed for lookup, with a cache of kernel maps.

    keys: (N,) int64 in row order; sorted/order: the keys sorted and their row numbers.
    """

    def __init__(self, keys: torch.Tensor, stride: int, is_sorted: bool = False,
                 coords: torch.Tensor | None = None):
        self.id = next(_ids)
        self.keys = keys
        self.stride = stride
        if is_sorted:
            self.sorted, self.order = keys, torch.arange(keys.shape[0], device=keys.device)
        else:
            self.sorted, self.order = torch.sort(keys)
        self._coords = coords
        self.cache: dict = {}

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def coords(self) -> torch.Tensor:
        if self._coords is None:
            self._coords = decode(self.keys)
        return self._coords

    def find(self, query: torch.Tensor) -> torch.Tensor:
        """Row of each query key, or len(self) where absent; same shape as ``query``."""
        n = len(self)
        if n == 0:
            return torch.zeros_like(query)
        pos = torch.searchsorted(self.sorted, query).clamp_(max=n - 1)
        hit = self.sorted[pos] == query
        return torch.where(hit, self.order[pos], torch.full_like(pos, n))

    def cached(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def coords(cmap: CoordMap) -> torch.Tensor:
    """(N, 4) int32 coordinates of a coordinate map, in feature-row order."""
    return cmap.coords


def make_tensor(coords: torch.Tensor, feats: torch.Tensor, stride: int) -> SparseTensor:
    """SparseTensor over unique (N, 4) int32 coordinates; ValueError on duplicates."""
    keys = encode(coords)
    cmap = CoordMap(keys, stride, coords=coords)
    if keys.shape[0] > 1 and bool((cmap.sorted[1:] == cmap.sorted[:-1]).any()):
        raise ValueError("sparse_tensor: coordinates contain duplicate rows")
    return SparseTensor(feats, cmap, stride, NAME)


_DENSE_CELLS = 1 << 26  # largest index grid (int32 cells) used instead of sorted-key lookups


def _box(in_coords: torch.Tensor, out_coords: torch.Tensor, offsets: torch.Tensor, stride: int):
    """Origin (3,) and dims (batches, x, y, z) of the stride-``stride`` lattice box holding in_coords
    and out_coords + every offset; None when it has more than _DENSE_CELLS cells."""
    ic, oc = in_coords[:, 1:].to(torch.int64), out_coords[:, 1:].to(torch.int64)
    lo = torch.minimum(ic.min(dim=0).values, oc.min(dim=0).values + offsets.min(dim=0).values)
    hi = torch.maximum(ic.max(dim=0).values, oc.max(dim=0).values + offsets.max(dim=0).values)
    nb = max(int(in_coords[:, 0].max()), int(out_coords[:, 0].max())) + 1
    ext = ((hi - lo) // stride + 1).tolist()
    if nb * ext[0] * ext[1] * ext[2] > _DENSE_CELLS:
        return None
    return lo, (nb, ext[0], ext[1], ext[2])


def _linear(coords: torch.Tensor, lo: torch.Tensor, dims, stride: int) -> torch.Tensor:
    c = coords.to(torch.int64)
    x, y, z = ((c[:, 1:] - lo) // stride).unbind(1)
    return ((c[:, 0] * dims[1] + x) * dims[2] + y) * dims[3] + z


def _neighbour_table(out_map: CoordMap, in_map: CoordMap, kernel_size: int, scale: int) -> torch.Tensor:
    """(len(out_map), K) rows of in_map at out + offset * scale, len(in_map) where absent.

    Offsets and coordinates are multiples of in_map's stride. Small boxes use a dense index grid
    (one gather per query); large ones binary-search the sorted keys.
    """
    device = out_map.keys.device
    n, n_in = len(out_map), len(in_map)
    offs = kernel_offsets(kernel_size).to(device) * scale
    k = offs.shape[0]
    if n == 0 or n_in == 0:
        return torch.full((n, k), n_in, dtype=torch.int64, device=device)
    s = in_map.stride
    box = _box(in_map.coords, out_map.coords, offs, s)
    if box is not None:
        lo, dims = box
        grid = torch.full((dims[0] * dims[1] * dims[2] * dims[3],), n_in, dtype=torch.int32, device=device)
        grid[_linear(in_map.coords, lo, dims, s)] = torch.arange(n_in, dtype=torch.int32, device=device)
        o = offs // s
        delta = (o[:, 0] * dims[2] + o[:, 1]) * dims[3] + o[:, 2]
        return grid[_linear(out_map.coords, lo, dims, s)[:, None] + delta[None, :]].to(torch.int64)
    delta = key_delta(kernel_size, scale, device)
    table = torch.empty(n, k, dtype=torch.int64, device=device)
    step = max(1, (1 << 22) // k)
    for i in range(0, n, step):
        table[i:i + step] = in_map.find(out_map.keys[i:i + step, None] + delta[None, :])
    return table


# ------------------------------------------------------------------------------ compute primitives

def _rows(width: int) -> int:
    return max(256, _BLOCK_ELEMS // max(1, width))


def _gather_apply(src: torch.Tensor, table: torch.Tensor, wmat: torch.Tensor) -> torch.Tensor:
    """out[j] = concat_k(src[table[j, k]]) @ wmat.  src (Nb, C), table (Na, K), wmat (K*C, D)."""
    n_a, k = table.shape
    c = src.shape[1]
    pad = torch.cat([src, src.new_zeros(1, c)])
    out = src.new_empty(n_a, wmat.shape[1])
    step = _rows(k * c)
    for s in range(0, n_a, step):
        g = pad.index_select(0, table[s:s + step].reshape(-1)).view(-1, k * c)
        torch.mm(g, wmat, out=out[s:s + step])
    return out


def _gather_wgrad(src: torch.Tensor, table: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """sum_j concat_k(src[table[j, k]])^T grad[j]: (K*C, D)."""
    n_a, k = table.shape
    c = src.shape[1]
    pad = torch.cat([src, src.new_zeros(1, c)])
    acc = src.new_zeros(grad.shape[1], k * c)  # (D, K*C): BLAS is far faster with the thin operand transposed
    step = _rows(k * c)
    for s in range(0, n_a, step):
        g = pad.index_select(0, table[s:s + step].reshape(-1)).view(-1, k * c)
        acc.addmm_(grad[s:s + step].t(), g)
    return acc.t()


def _scatter_apply(src: torch.Tensor, table: torch.Tensor, wmat: torch.Tensor, n_b: int) -> torch.Tensor:
    """out[table[i, k]] += (src[i] @ wmat)[k].  src (Na, C), table (Na, K), wmat (C, K*D) -> (n_b, D)."""
    n_a, k = table.shape
    d = wmat.shape[1] // k
    out = src.new_zeros(n_b, d)
    step = _rows(k * max(d, src.shape[1]))
    for s in range(0, n_a, step):
        y = torch.mm(src[s:s + step], wmat).view(-1, d)
        t = table[s:s + step].reshape(-1)
        hit = t < n_b
        if bool(hit.all()):
            out.index_add_(0, t, y)
        else:
            out.index_add_(0, t[hit], y[hit])
    return out


def _scatter_wgrad(src: torch.Tensor, table: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """sum_i src[i]^T concat_k(grad[table[i, k]]): (C, K*D)."""
    n_a, k = table.shape
    d = grad.shape[1]
    pad = torch.cat([grad, grad.new_zeros(1, d)])
    acc = src.new_zeros(src.shape[1], k * d)
    step = _rows(k * d)
    for s in range(0, n_a, step):
        g = pad.index_select(0, table[s:s + step].reshape(-1)).view(-1, k * d)
        acc.addmm_(src[s:s + step].t(), g)
    return acc


class _GatherConv(torch.autograd.Function):
    """out (Na, Co) = gather-form convolution of feats (Nb, Ci) with weight (K, Ci, Co)."""

    @staticmethod
    def forward(ctx, feats, weight, table):
        k, ci, co = weight.shape
        ctx.save_for_backward(feats, weight, table)
        return _gather_apply(feats, table, weight.reshape(k * ci, co))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        feats, weight, table = ctx.saved_tensors
        k, ci, co = weight.shape
        grad = grad.contiguous()
        gf = gw = None
        if ctx.needs_input_grad[0]:
            gf = _scatter_apply(grad, table, weight.permute(2, 0, 1).reshape(co, k * ci), feats.shape[0])
        if ctx.needs_input_grad[1]:
            gw = _gather_wgrad(feats, table, grad).reshape(k, ci, co)
        return gf, gw, None


class _ScatterConv(torch.autograd.Function):
    """out (n_out, Co) = scatter-form convolution of feats (Na, Ci) with weight (K, Ci, Co)."""

    @staticmethod
    def forward(ctx, feats, weight, table, n_out):
        k, ci, co = weight.shape
        ctx.save_for_backward(feats, weight, table)
        return _scatter_apply(feats, table, weight.permute(1, 0, 2).reshape(ci, k * co), n_out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        feats, weight, table = ctx.saved_tensors
        k, ci, co = weight.shape
        grad = grad.contiguous()
        gf = gw = None
        if ctx.needs_input_grad[0]:
            gf = _gather_apply(grad, table, weight.permute(0, 2, 1).reshape(k * co, ci))
        if ctx.needs_input_grad[1]:
            gw = _scatter_wgrad(feats, table, grad).view(ci, k, co).permute(1, 0, 2)
        return gf, gw, None, None


# -------------------------------------------------------------------------------------------- ops

def conv(x: SparseTensor, weight: torch.Tensor, kernel_size: int, dilation: int) -> SparseTensor:
    """Submanifold convolution: output on x's coordinates, offsets scaled by stride * dilation."""
    cmap = x.cmap
    table = cmap.cached(("sub", kernel_size, dilation),
                        lambda: _neighbour_table(cmap, cmap, kernel_size, x.stride * dilation))
    return x.replace(_GatherConv.apply(x.feats, weight, table))


def downsampled(cmap: CoordMap) -> CoordMap:
    """Coordinates floored to multiples of 2 * stride, unique (sorted)."""
    def make():
        step = 2 * cmap.stride
        c = cmap.coords.to(torch.int64)
        c = torch.cat([c[:, :1], torch.div(c[:, 1:], step, rounding_mode="floor") * step], dim=1)
        return CoordMap(torch.unique(encode(c)), step, is_sorted=True)
    return cmap.cached(("down",), make)


def conv_down(x: SparseTensor, weight: torch.Tensor, kernel_size: int) -> SparseTensor:
    """Stride-2 convolution: output on the floored coordinates at stride 2s, offsets scaled by s."""
    cmap = x.cmap
    coarse = downsampled(cmap)
    table = cmap.cached(("down", kernel_size),
                        lambda: _neighbour_table(coarse, cmap, kernel_size, x.stride))
    return SparseTensor(_GatherConv.apply(x.feats, weight, table), coarse, coarse.stride, NAME)


def conv_transpose(x: SparseTensor, weight: torch.Tensor, kernel_size: int, target: SparseTensor) -> SparseTensor:
    """Transposed convolution onto target's coordinates: out[p + o * s_out] += in[p] @ W[o]."""
    cmap, fine = x.cmap, target.cmap
    table = cmap.cached(("up", fine.id, kernel_size),
                        lambda: _neighbour_table(cmap, fine, kernel_size, target.stride))
    feats = _ScatterConv.apply(x.feats, weight, table, len(fine))
    return SparseTensor(feats, fine, target.stride, NAME)


def conv_generative(x: SparseTensor, weight: torch.Tensor, kernel_size: int, stride: int) -> SparseTensor:
    """Generative transposed convolution: output on every p + o * s_out (s_out = s / stride)."""
    cmap = x.cmap
    out_stride = x.stride // stride

    def make():
        keys = cmap.keys[:, None] + key_delta(kernel_size, out_stride, cmap.keys.device)[None, :]
        uniq, inverse = torch.unique(keys.reshape(-1), sorted=True, return_inverse=True)
        return CoordMap(uniq, out_stride, is_sorted=True), inverse.view(keys.shape)

    out_map, table = cmap.cached(("gen", kernel_size, stride), make)
    feats = _ScatterConv.apply(x.feats, weight, table, len(out_map))
    return SparseTensor(feats, out_map, out_stride, NAME)


def prune(x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
    """Keep the rows where ``mask`` (N,) bool is True (coordinates and features, order kept)."""
    cmap = x.cmap
    sub = CoordMap(cmap.keys[mask], x.stride, coords=cmap.coords[mask] if cmap._coords is not None else None)
    return SparseTensor(x.feats[mask], sub, x.stride, NAME)


def same_map(a: CoordMap, b: CoordMap) -> bool:
    """True when two coordinate maps hold the same coordinates in the same row order."""
    return a is b or (len(a) == len(b) and bool(torch.equal(a.keys, b.keys)))
