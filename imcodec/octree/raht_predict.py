"""Transform-domain prediction for RAHT: octree neighbours and the upsampled prediction of a block.

G-PCC's RAHT predicts the children of a node from the reconstructed means one level up: for child
j, the weighted mean of the node itself and of those of its 6 face and 12 edge neighbours that touch
j (ISO/IEC 23090-9 "intra RAHT prediction"; neighbours here: :data:`NEIGHBOURS`). When a neighbour
has already been decoded down to the child level (it precedes the node in Morton order), its child
cell touching j replaces it with a finer value ("subnode" prediction). The prediction is then
transformed with the block's RAHT and only its high-pass part is used, so the block's DC (the
node's own mean) is never predicted.

Neighbour lists are found without hashing: the 19-neighbourhood of a node lies inside the
19-neighbourhood of its parent, so each level's lists come from the level above by scanning at most
eight children (:func:`level_neighbours`).
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit

# The 19 neighbours: the node itself, 6 face and 12 edge neighbours. Columns dx, dy, dz, kind
# (0 = the node, 1 = face, 2 = edge).
_NB = sorted(((dx, dy, dz, abs(dx) + abs(dy) + abs(dz))
              for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
              if abs(dx) + abs(dy) + abs(dz) <= 2), key=lambda t: (t[3], t))
NEIGHBOURS = np.array(_NB, dtype=np.int64)  # (19, 4)


def _tables():
    """Child masks (19,), and for child position j and neighbour i: (8, 19) parent slot, child pos."""
    masks = np.zeros(19, dtype=np.int64)
    slot = np.zeros((8, 19), dtype=np.int64)
    cpos = np.zeros((8, 19), dtype=np.int64)
    index = {tuple(t[:3]): i for i, t in enumerate(_NB)}
    for j in range(8):
        bits = ((j >> 2) & 1, (j >> 1) & 1, j & 1)
        for i, (dx, dy, dz, _) in enumerate(_NB):
            t = [b + d for b, d in zip(bits, (dx, dy, dz))]  # child-level offset, -1..2 per axis
            delta = tuple(v // 2 for v in t)  # the parent-level cell holding it
            slot[j, i] = index[delta]
            cpos[j, i] = ((t[0] & 1) << 2) | ((t[1] & 1) << 1) | (t[2] & 1)
            if delta == (dx, dy, dz):  # child j touches neighbour i (i = 0: always)
                masks[i] |= 1 << j
    return masks, slot, cpos


NEIGHBOUR_CHILD_MASKS, NB_SLOT, NB_CPOS = _tables()

# Prediction weights (G-PCC's shape; values tuned on Owlii and 8i frames): parent-level value of the
# node itself / a face / an edge neighbour, and the child-level value of an already reconstructed
# face / edge neighbour cell, which replaces its parent's value.
PRED_W_PARENT = np.array([16, 8, 1], dtype=np.int64)
PRED_W_CHILD = np.array([0, 16, 2], dtype=np.int64)


@njit(cache=True)
def root_neighbours(root):
    """(1, 19) int64 neighbour list of the root node (itself only)."""
    out = np.full((1, 19), -1, dtype=np.int64)
    out[0, 0] = root
    return out


@njit(cache=True)
def level_neighbours(node_code, child_first, child_count, up_lo, up_hi, up_nbl, lo, hi):
    """Neighbour lists of the nodes [lo, hi) of one level: (hi - lo, 19) int64 node indices or -1.

    The nodes [up_lo, up_hi) are the level above (their children are exactly [lo, hi)) and up_nbl
    ((up_hi - up_lo, 19)) their own neighbour lists. Column i holds the node at offset NEIGHBOURS[i].
    """
    out = np.full((hi - lo, 19), -1, dtype=np.int64)
    for par in range(up_lo, up_hi):
        row = up_nbl[par - up_lo]
        for p in range(child_first[par], child_first[par] + child_count[par]):
            j = node_code[p] & 7
            out[p - lo, 0] = p
            for i in range(1, 19):
                g = row[NB_SLOT[j, i]]
                if g < 0:
                    continue
                want = NB_CPOS[j, i]
                for c in range(child_first[g], child_first[g] + child_count[g]):
                    if (node_code[c] & 7) == want:
                        out[p - lo, i] = c
                        break
    return out


@njit(cache=True)
def _pred_sums(val, node_code, child_first, child_count, p, nbr, occ, num, den):
    cmap = np.empty(8, dtype=np.int64)
    for i in range(19):
        n = nbr[i]
        if n < 0:
            continue
        m = NEIGHBOUR_CHILD_MASKS[i] & occ
        if m == 0:
            continue
        kind = NEIGHBOURS[i, 3]
        fine = i > 0 and n < p  # n is reconstructed down to the child level
        if fine:
            cmap[:] = -1
            for c in range(child_first[n], child_first[n] + child_count[n]):
                cmap[node_code[c] & 7] = c
        for j in range(8):
            if (m >> j) & 1 == 0:
                continue
            src = n
            w = PRED_W_PARENT[kind]
            if fine:
                f = cmap[NB_CPOS[j, i]]
                if f >= 0:
                    src = f
                    w = PRED_W_CHILD[kind]
            den[j] += w
            for k in range(3):
                num[j, k] += w * val[src, k]


@njit(cache=True)
def predict_block(val, node_code, child_first, child_count, p, nbr, occ, pred8):
    """Predicted child means of node p.

    val: (T, 3) float64 reconstructed means (valid for p's level, and the child level of nodes of
    p's level with a smaller index); nbr: p's (19,) neighbour list; occ: p's child occupancy bits;
    pred8: (8, 3) float64 output, written for occupied children.
    """
    num = np.zeros((8, 3), dtype=np.float64)
    den = np.zeros(8, dtype=np.int64)
    _pred_sums(val, node_code, child_first, child_count, p, nbr, occ, num, den)
    for j in range(8):
        if (occ >> j) & 1:
            for k in range(3):
                pred8[j, k] = num[j, k] / den[j]


@njit(cache=True)
def predict_block_int(val, node_code, child_first, child_count, p, nbr, occ, pred8):
    """Integer version of :func:`predict_block` (val, pred8 int64; rounded weighted means)."""
    num = np.zeros((8, 3), dtype=np.int64)
    den = np.zeros(8, dtype=np.int64)
    _pred_sums(val, node_code, child_first, child_count, p, nbr, occ, num, den)
    for j in range(8):
        if (occ >> j) & 1:
            for k in range(3):
                pred8[j, k] = (2 * num[j, k] + den[j]) // (2 * den[j])
