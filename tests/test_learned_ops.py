"""Sparse ops of the torch backend against dense torch.nn.functional.conv3d on small random grids."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imcodec.learned import functional as SF
from imcodec.learned.sparse import kernel_offsets, sparse_tensor

G = 8  # dense grid edge (lattice units)
DT = torch.float64


def random_sites(n: int, seed: int, grid: int = G, batches: int = 1) -> torch.Tensor:
    """(n', 4) int32 unique [b, x, y, z] with x, y, z in 0..grid-1."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(batches * grid ** 3, generator=gen)[:n]
    b, r = cells // grid ** 3, cells % grid ** 3
    return torch.stack([b, r // grid ** 2, (r // grid) % grid, r % grid], 1).to(torch.int32)


def dense_weight(w: torch.Tensor, k: int) -> torch.Tensor:
    """(K, Ci, Co) sparse kernel -> (Co, Ci, k, k, k) conv3d kernel indexed [x, y, z] (x fastest in K)."""
    return w.view(k, k, k, w.shape[1], w.shape[2]).permute(4, 3, 2, 1, 0).contiguous()


def densify(coords: torch.Tensor, feats: torch.Tensor, scale: int = 1, grid: int = G, batches: int = 1):
    """(B, C, grid, grid, grid) dense tensor with feats at coords / scale."""
    d = feats.new_zeros(batches, feats.shape[1], grid, grid, grid)
    c = coords.long()
    d[c[:, 0], :, c[:, 1] // scale, c[:, 2] // scale, c[:, 3] // scale] = feats
    return d


def at(dense: torch.Tensor, coords: torch.Tensor, scale: int = 1) -> torch.Tensor:
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1] // scale, c[:, 2] // scale, c[:, 3] // scale]


def params(n_sites: int, ci: int, co: int, k: int, seed: int):
    gen = torch.Generator().manual_seed(seed + 1)
    feats = torch.randn(n_sites, ci, generator=gen, dtype=DT, requires_grad=True)
    w = torch.randn(k ** 3, ci, co, generator=gen, dtype=DT, requires_grad=True)
    probe = torch.randn(n_sites * 64 + 1000, co, generator=gen, dtype=DT)  # fixed random loss weights
    return feats, w, probe


def test_kernel_offsets_order():
    o = kernel_offsets(3)
    assert o.shape == (27, 3)
    assert o[0].tolist() == [-1, -1, -1] and o[1].tolist() == [0, -1, -1] and o[3].tolist() == [-1, 0, -1]
    assert o[13].tolist() == [0, 0, 0]
    assert kernel_offsets(2).tolist()[:3] == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize("k,dilation,stride", [(3, 1, 1), (3, 2, 1), (5, 1, 1), (3, 1, 2), (2, 1, 1)])
def test_submanifold_conv_matches_dense(k, dilation, stride):
    coords = random_sites(150, seed=k * 10 + dilation)
    coords[:, 1:] *= stride
    feats, w, probe = params(len(coords), 3, 4, k, seed=7)
    x = sparse_tensor(coords, feats, stride=stride)
    out = SF.conv3d(x, w, kernel_size=k, dilation=dilation)
    assert torch.equal(out.coords, x.coords)
    loss = (out.feats * probe[:len(out)]).sum()
    gf, gw = torch.autograd.grad(loss, [feats, w])

    wd = dense_weight(w, k)
    lo = (k // 2) * dilation if k % 2 else 0
    hi = (k // 2) * dilation if k % 2 else (k - 1) * dilation
    dense = F.conv3d(F.pad(densify(coords, feats, stride), (lo, hi) * 3), wd, dilation=dilation)
    ref = at(dense, coords, stride)
    ref_loss = (ref * probe[:len(out)]).sum()
    rgf, rgw = torch.autograd.grad(ref_loss, [feats, w])
    torch.testing.assert_close(out.feats, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf, rgf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rgw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k,stride", [(2, 1), (3, 1), (2, 2)])
def test_strided_conv_matches_dense(k, stride):
    coords = random_sites(200, seed=3 + k)
    coords[:, 1:] *= stride
    feats, w, probe = params(len(coords), 2, 3, k, seed=11)
    x = sparse_tensor(coords, feats, stride=stride)
    out = SF.conv3d_down(x, w, kernel_size=k)
    assert out.stride == 2 * stride
    expect = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // (2 * stride) * (2 * stride)], 1), dim=0)
    got = out.coords
    assert torch.equal(torch.unique(got, dim=0), expect) and len(got) == len(expect)
    loss = (out.feats * probe[:len(out)]).sum()
    gf, gw = torch.autograd.grad(loss, [feats, w])

    pad = 1 if k == 3 else 0
    dense = F.conv3d(F.pad(densify(coords, feats, stride), (pad, pad) * 3), dense_weight(w, k), stride=2)
    ref = at(dense, got, 2 * stride)
    rgf, rgw = torch.autograd.grad((ref * probe[:len(out)]).sum(), [feats, w])
    torch.testing.assert_close(out.feats, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf, rgf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rgw, rtol=1e-10, atol=1e-10)


def _transposed_reference(coarse_coords, feats, w, k, grid=G):
    """out[q] = sum_o W[o]^T in[q - o]: conv3d of the zero-inserted fine grid with the flipped kernel."""
    u = densify(coarse_coords, feats, grid=grid)
    wd = dense_weight(w, k).flip(2, 3, 4)
    if k % 2:
        return F.conv3d(F.pad(u, (k // 2, k // 2) * 3), wd)
    return F.conv3d(F.pad(u, (k - 1, 0) * 3), wd)


@pytest.mark.parametrize("k", [2, 3])
def test_transposed_conv_matches_dense(k):
    fine = random_sites(220, seed=21)
    x_fine = sparse_tensor(fine, torch.zeros(len(fine), 1, dtype=DT))
    coarse_map = SF.conv3d_down(x_fine, torch.zeros(8, 1, 1, dtype=DT), kernel_size=2)
    coarse = coarse_map.coords
    feats, w, probe = params(len(coarse), 3, 2, k, seed=5)
    x = coarse_map.replace(feats)
    out = SF.conv_transpose3d(x, w, x_fine, kernel_size=k)
    assert torch.equal(out.coords, fine) and out.stride == 1
    gf, gw = torch.autograd.grad((out.feats * probe[:len(out)]).sum(), [feats, w])
    ref = at(_transposed_reference(coarse, feats, w, k), fine)
    rgf, rgw = torch.autograd.grad((ref * probe[:len(out)]).sum(), [feats, w])
    torch.testing.assert_close(out.feats, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf, rgf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rgw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (3, 1), (5, 1)])
def test_generative_conv_matches_dense(k, stride):
    grid = 12
    base = random_sites(40, seed=31 + k, grid=4)
    base[:, 1:] = base[:, 1:] * stride + 2  # generated voxels stay inside the 12^3 grid
    feats, w, probe = params(len(base), 2, 3, k, seed=9)
    x = sparse_tensor(base, feats, stride=stride)
    out = SF.generative_conv_transpose3d(x, w, kernel_size=k, stride=stride)
    assert out.stride == 1
    offs = kernel_offsets(k).to(torch.int32)
    expect = torch.unique((base[:, None, 1:] + offs[None]).reshape(-1, 3), dim=0)
    got = out.coords
    assert len(got) == len(expect)
    assert torch.equal(torch.unique(got[:, 1:], dim=0), expect)
    gf, gw = torch.autograd.grad((out.feats * probe[:len(out)]).sum(), [feats, w])
    dense = _transposed_reference(base, feats, w, k, grid=grid)
    ref = at(dense, got)
    rgf, rgw = torch.autograd.grad((ref * probe[:len(out)]).sum(), [feats, w])
    torch.testing.assert_close(out.feats, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf, rgf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rgw, rtol=1e-10, atol=1e-10)
    # nothing outside the generated voxels receives a value
    mask = torch.ones(grid, grid, grid, dtype=torch.bool)
    mask[got[:, 1].long(), got[:, 2].long(), got[:, 3].long()] = False
    assert float(dense.detach()[0][:, mask].abs().max()) == 0.0


def test_batches_do_not_mix():
    coords = random_sites(300, seed=41, batches=2)
    feats, w, _ = params(len(coords), 2, 2, 3, seed=2)
    x = sparse_tensor(coords, feats.detach())
    out = SF.conv3d(x, w.detach())
    for b in (0, 1):
        m = coords[:, 0] == b
        c = coords[m].clone()
        c[:, 0] = 0
        alone = SF.conv3d(sparse_tensor(c, feats.detach()[m]), w.detach())
        torch.testing.assert_close(out.feats[m], alone.feats, rtol=1e-12, atol=1e-12)
    down = SF.conv3d_down(x, torch.ones(8, 2, 1, dtype=DT))
    assert set(down.coords[:, 0].tolist()) == {0, 1}


def test_prune_topk_and_pooling():
    coords = random_sites(50, seed=5, batches=2)
    feats = torch.randn(len(coords), 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    x = sparse_tensor(coords, feats)
    kept = SF.prune_topk(x, 7)
    assert len(kept) == 7
    assert torch.equal(torch.sort(kept.feats[:, 0]).values, torch.sort(feats[:, 0]).values[-7:])
    assert len(SF.prune_topk(x, 1000)) == len(x)
    mask = feats[:, 1] > 0
    p = SF.prune(x, mask)
    assert torch.equal(p.coords, coords[mask]) and torch.equal(p.feats, feats[mask])
    avg, mx = SF.global_avg_pool(x), SF.global_max_pool(x)
    for b in (0, 1):
        m = coords[:, 0] == b
        torch.testing.assert_close(avg[b], feats[m].mean(0))
        torch.testing.assert_close(mx[b], feats[m].max(0).values)
    # a pruned tensor convolves on its own coordinates
    out = SF.conv3d(p, torch.ones(27, 2, 1, dtype=DT))
    assert len(out) == int(mask.sum())


def test_bad_inputs():
    coords = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]], dtype=torch.int32)
    with pytest.raises(ValueError, match="duplicate"):
        sparse_tensor(coords, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="multiples"):
        sparse_tensor(coords[:1], torch.zeros(1, 1), stride=2)
    x = sparse_tensor(coords[:1], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="weight must be"):
        SF.conv3d(x, torch.zeros(27, 3, 1))
