"""V-PCC packing: no overlap, inside the canvas, orientation mapping, occupancy/block-owner coding."""

from __future__ import annotations

import numpy as np
import pytest

from imcodec.errors import BitstreamError
from imcodec.vpcc.metadata import FrameMeta
from imcodec.vpcc.occupancy import (
    box_blocks,
    cell_allowed,
    decode_occupancy_map,
    encode_occupancy,
    occupancy_cells,
    owner_indices,
)
from imcodec.vpcc.packing import BLOCK, block_masks, orient_coords, pack, unorient_coords
from imcodec.vpcc.reconstruct import canvas_coords, local_coords


def _random_patches(rng, n=40, max_side=90):
    """Random blob-shaped patches: sizes (su, sv) and their pixels."""
    su = rng.integers(1, max_side, size=n)
    sv = rng.integers(1, max_side, size=n)
    pp, pu, pv = [], [], []
    for p in range(n):
        u, v = np.meshgrid(np.arange(su[p]), np.arange(sv[p]), indexing="xy")
        cu, cv = (su[p] - 1) / 2, (sv[p] - 1) / 2
        inside = ((u - cu) / max(cu, 0.5)) ** 2 + ((v - cv) / max(cv, 0.5)) ** 2 <= 1.0
        inside |= (u == int(cu)) & (v == int(cv))
        pu.append(u[inside])
        pv.append(v[inside])
        pp.append(np.full(inside.sum(), p))
    return (np.asarray(su, np.int64), np.asarray(sv, np.int64), np.concatenate(pp).astype(np.int64),
            np.concatenate(pu).astype(np.int64), np.concatenate(pv).astype(np.int64))


@pytest.mark.parametrize("orientations", [1, 2, 8])
def test_packing_has_no_overlap_and_stays_in_the_canvas(orientations):
    rng = np.random.default_rng(orientations)
    su, sv, pp, pu, pv = _random_patches(rng)
    ptr, mask = block_masks(pp, pu, pv, su, sv)
    packing = pack(su, sv, ptr, mask, width=256, orientations=orientations)
    assert packing.width == 256 and packing.height % BLOCK == 0
    assert set(packing.orient.tolist()) <= set(range(orientations))
    meta = _meta(su, sv, packing)
    ys, xs = canvas_coords(meta, pp, pu, pv)
    assert ys.min() >= 0 and xs.min() >= 0
    assert ys.max() < packing.height and xs.max() < packing.width
    # no canvas pixel holds two patch pixels, and no 16x16 block is shared by two patches
    assert len(np.unique(ys * packing.width + xs)) == len(ys)
    owners = {}
    for b, p in zip(((ys // BLOCK) * 10_000 + xs // BLOCK).tolist(), pp.tolist()):
        assert owners.setdefault(b, p) == p
    # mapping back gives the local pixel
    lu, lv = local_coords(meta, ys, xs, pp)
    assert np.array_equal(lu, pu) and np.array_equal(lv, pv)


def test_packing_grows_the_canvas_for_wide_patches():
    su = np.array([40], dtype=np.int64)
    sv = np.array([3], dtype=np.int64)
    ptr, mask = block_masks(np.zeros(1, np.int64), np.array([39]), np.array([2]), su, sv)
    assert pack(su, sv, ptr, mask, width=32, orientations=1).width == 48
    assert pack(su, sv, ptr, mask, width=32, orientations=2).width == 32  # fits transposed


def test_orientations_are_invertible():
    for o in range(8):
        for lu, lv in [(0, 0), (5, 17), (31, 3)]:
            x, y = orient_coords(lu, lv, 2, 2, o)
            assert 0 <= x < 32 and 0 <= y < 32
            assert unorient_coords(x, y, 2, 2, o) == (lu, lv)


def _meta(su, sv, packing):
    n = len(su)
    z = np.zeros(n, dtype=np.int64)
    return FrameMeta(np.zeros(3, np.int64), 10, packing.width, packing.height, z, packing.orient,
                     packing.bu, packing.bv, (su + 15) // 16, (sv + 15) // 16, z, z, z)


@pytest.mark.parametrize("b0", [1, 2, 4])
def test_occupancy_and_block_owners_round_trip(b0):
    rng = np.random.default_rng(10 + b0)
    su, sv, pp, pu, pv = _random_patches(rng, n=25, max_side=70)
    ptr, mask = block_masks(pp, pu, pv, su, sv)
    packing = pack(su, sv, ptr, mask, width=192, orientations=2)
    meta = _meta(su, sv, packing)
    ys, xs = canvas_coords(meta, pp, pu, pv)
    occ = occupancy_cells(xs, ys, meta.width, meta.height, b0)
    wo = np.where(meta.orient & 1, meta.bh, meta.bw)
    ho = np.where(meta.orient & 1, meta.bw, meta.bh)
    cptr, cidx = box_blocks(meta.bu, meta.bv, wo, ho, meta.width, meta.height)
    allowed = cell_allowed(cptr, meta.width, meta.height, b0)
    assert np.all(allowed[occ > 0])
    owner = np.full((meta.height // BLOCK, meta.width // BLOCK), -1, dtype=np.int64)
    owner[ys // BLOCK, xs // BLOCK] = pp
    data = encode_occupancy(occ, allowed, owner_indices(occ, owner, cptr, cidx, b0))
    occ2, owner2 = decode_occupancy_map(data, allowed, cptr, cidx, b0)
    assert np.array_equal(occ2, occ)
    assert np.array_equal(owner2, owner)
    with pytest.raises(BitstreamError, match="occupancy"):
        decode_occupancy_map(data[: len(data) // 2], allowed, cptr, cidx, b0)
