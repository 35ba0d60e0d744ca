"""Temporally consistent packing of a V-PCC group of frames (see :func:`pack_gof`)."""

from __future__ import annotations

import numpy as np

from imcodec.vpcc.config import VpccConfig
from imcodec.vpcc.metadata import FrameMeta
from imcodec.vpcc.packing import BLOCK, block_masks, pack, pack_preferred, padded_blocks
from imcodec.vpcc.patches import PatchSet

MATCH_IOU = 0.2


def match_patches(cur: PatchSet, prev: PatchSet) -> np.ndarray:
    """(P,) int64: the matched patch of ``prev`` for each patch of ``cur``, or -1 (see module doc)."""
    out = np.full(cur.count, -1, dtype=np.int64)
    pairs = []
    for p in range(6):
        a = np.flatnonzero(cur.plane == p)
        b = np.flatnonzero(prev.plane == p)
        if len(a) == 0 or len(b) == 0:
            continue
        iw = (np.minimum(cur.u1[a, None] + cur.su[a, None], prev.u1[None, b] + prev.su[None, b])
              - np.maximum(cur.u1[a, None], prev.u1[None, b])).clip(0)
        ih = (np.minimum(cur.v1[a, None] + cur.sv[a, None], prev.v1[None, b] + prev.sv[None, b])
              - np.maximum(cur.v1[a, None], prev.v1[None, b])).clip(0)
        inter = (iw * ih).astype(np.float64)
        union = (cur.su[a] * cur.sv[a])[:, None] + (prev.su[b] * prev.sv[b])[None, :] - inter
        iou = inter / np.maximum(union, 1)
        ia, ib = np.nonzero(iou >= MATCH_IOU)
        pairs += [(iou[i, j], a[i], b[j]) for i, j in zip(ia, ib)]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    used = set()
    for _, i, j in pairs:
        if out[i] < 0 and j not in used:
            out[i] = j
            used.add(j)
    return out


def patch_tracks(psets: list[PatchSet]) -> list[list[tuple[int, int]]]:
    """Chains of matched patches through a GOF: lists of (frame, patch), in order of first appearance
    (frame, then patch index); a patch without partner in the previous frame starts a new track."""
    tracks: list[list[tuple[int, int]]] = []
    owner: list[np.ndarray] = []
    for t, ps in enumerate(psets):
        ids = np.full(ps.count, -1, dtype=np.int64)
        ref = match_patches(ps, psets[t - 1]) if t else np.full(ps.count, -1, dtype=np.int64)
        for i in range(ps.count):
            if ref[i] >= 0:
                ids[i] = owner[t - 1][ref[i]]
                tracks[ids[i]].append((t, i))
            else:
                ids[i] = len(tracks)
                tracks.append([(t, i)])
        owner.append(ids)
    return tracks


def pack_gof(psets: list[PatchSet], origin, coord_bits: int, cfg: VpccConfig):
    """Temporally consistent packing of a GOF (TMC2's global patch allocation idea).

    Every track of two or more matched patches gets one box for the whole GOF: its corner is the
    smallest u1 / v1 of its patches (each patch's box is widened to it, so a tangent coordinate has
    the same canvas pixel in every frame), its block mask the union of its patches' masks, its depth
    offset the smallest of theirs when every patch's depths still fit the video (a surface that does
    not move keeps its depth values). The union masks are packed once (largest first, as
    :func:`imcodec.vpcc.packing.pack`); each frame then places its tracked patches there (they always
    fit) and packs its other patches into the free space. Returns (metas, psets), patches of each
    frame in coding order: tracked ones in track order, then the others largest first.
    """
    max_depth = (1 << cfg.geometry_bits) - 1
    tracks = [tr for tr in patch_tracks(psets) if len(tr) > 1]
    new = [dict(u1=p.u1.copy(), v1=p.v1.copy(), off=p.offset.copy(), su=p.su.copy(), sv=p.sv.copy(),
                du=np.zeros(p.count, np.int64), dv=np.zeros(p.count, np.int64),
                dd=np.zeros(p.count, np.int64), track=np.full(p.count, -1, np.int64)) for p in psets]
    tops = []
    for p in psets:
        top = np.zeros(p.count, dtype=np.int64)
        if len(p.pix_patch):
            np.maximum.at(top, p.pix_patch, p.pix_d1)
        tops.append(top)
    for k, tr in enumerate(tracks):
        u0 = min(psets[t].u1[i] for t, i in tr)
        v0 = min(psets[t].v1[i] for t, i in tr)
        su = max(psets[t].u1[i] + psets[t].su[i] for t, i in tr) - u0
        sv = max(psets[t].v1[i] + psets[t].sv[i] for t, i in tr) - v0
        o0 = min(psets[t].offset[i] for t, i in tr)
        same_off = all(tops[t][i] + psets[t].offset[i] - o0 <= max_depth for t, i in tr)
        for t, i in tr:
            d = new[t]
            d["du"][i], d["dv"][i] = d["u1"][i] - u0, d["v1"][i] - v0
            d["u1"][i], d["v1"][i], d["su"][i], d["sv"][i] = u0, v0, su, sv
            if same_off:
                d["dd"][i] = d["off"][i] - o0
                d["off"][i] = o0
            d["track"][i] = k
    shifted = []
    for p, d in zip(psets, new):
        q = p.pix_patch
        shifted.append(PatchSet(p.plane, d["u1"], d["v1"], d["off"], d["su"], d["sv"], q,
                                p.pix_u + d["du"][q], p.pix_v + d["dv"][q], p.pix_d0 + d["dd"][q],
                                p.pix_d1 + d["dd"][q], p.raw))
    # one box per track: the union of its patches' block masks
    tsu = np.array([shifted[tr[0][0]].su[tr[0][1]] for tr in tracks], dtype=np.int64)
    tsv = np.array([shifted[tr[0][0]].sv[tr[0][1]] for tr in tracks], dtype=np.int64)
    tbw, tbh = padded_blocks(tsu, tsv)
    tptr = np.concatenate([[0], np.cumsum(tbw * tbh)]).astype(np.int64)
    tmask = np.zeros(int(tptr[-1]), dtype=np.uint8)
    for k, tr in enumerate(tracks):
        for t, i in tr:
            ps = shifted[t]
            sel = ps.pix_patch == i
            tmask[tptr[k] + (ps.pix_v[sel] // BLOCK) * tbw[k] + ps.pix_u[sel] // BLOCK] = 1
    if len(tracks):
        placed = pack(tsu, tsv, tptr, tmask, cfg.canvas_width, cfg.orientations)
        width = placed.width
    else:
        placed, width = None, cfg.canvas_width
    metas, out = [], []
    for ps, d in zip(shifted, new):
        n = ps.count
        bw, bh = padded_blocks(ps.su, ps.sv)
        tid = d["track"]
        key = np.where(tid >= 0, tid, np.iinfo(np.int64).max)
        order = np.lexsort((np.arange(n), -bh, -(bw * bh), key)).astype(np.int64)
        ps = _reorder(ps, order)
        tid = tid[order]
        pbu = np.full(n, -1, dtype=np.int64)
        pbv = np.zeros(n, dtype=np.int64)
        por = np.zeros(n, dtype=np.int64)
        m = tid >= 0
        if placed is not None:
            pbu[m], pbv[m], por[m] = placed.bu[tid[m]], placed.bv[tid[m]], placed.orient[tid[m]]
        ptr, mask = block_masks(ps.pix_patch, ps.pix_u, ps.pix_v, ps.su, ps.sv)
        packing = pack_preferred(ps.su, ps.sv, ptr, mask, np.arange(n), pbu, pbv, por, width,
                                 cfg.orientations)
        bw, bh = padded_blocks(ps.su, ps.sv)
        sgn = np.where(ps.plane < 3, -1, 1)
        metas.append(FrameMeta(np.asarray(origin, dtype=np.int64), coord_bits, packing.width,
                               packing.height if n else 0, ps.plane, packing.orient, packing.bu,
                               packing.bv, bw, bh, ps.u1, ps.v1, sgn * ps.offset))
        out.append(ps)
    return metas, out


def _reorder(pset: PatchSet, order: np.ndarray) -> PatchSet:
    rank = np.empty(pset.count, dtype=np.int64)
    rank[order] = np.arange(pset.count)
    return PatchSet(pset.plane[order], pset.u1[order], pset.v1[order], pset.offset[order],
                    pset.su[order], pset.sv[order], rank[pset.pix_patch], pset.pix_u, pset.pix_v,
                    pset.pix_d0, pset.pix_d1, pset.raw)
