"""A uniform cell grid over a point cloud, the index behind the exact neighbour searches in nn.py.

Cells are cubes of side ``cell`` (a power of two) anchored at ``origin``; cell ``k`` along an axis
covers ``origin + k*cell`` up to ``origin + (k+1)*cell - edge``. For clouds with integer
coordinates ``edge`` is 1 (a cell holds the integers ``o+k*c .. o+(k+1)*c-1``), which gives the
searches tighter lower bounds; otherwise it is 0.

Points are stored sorted by cell, cells sorted by (cx, cy, cz). A dense 2-D array over (cx, cy)
gives each column's run of cells, so a search reaches the cells of a column by binary search on
their cz: no hashing, and neighbouring queries touch neighbouring memory.

Kernels are Numba ``@njit(cache=True)`` functions on contiguous arrays; :func:`build_grid` is the
Python entry point that picks the cell size and validates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcodec.jit import njit
from imcodec.metrics.dedup import radix_argsort

MAX_COLUMNS = 1 << 23  # cells of the dense (cx, cy) index; coarser cells beyond this


@dataclass(frozen=True)
class Grid:
    """Cell index of one cloud of M points.

    coords:    (M, 3) float32 positions in the cloud's own order.
    sx/sy/sz:  (M,) float32 positions sorted by cell.
    order:     (M,) int32 cloud index of each sorted position.
    start:     (n_cells + 1,) int64 offsets of each cell's points in the sorted arrays.
    cell_xyz:  (n_cells, 3) int64 integer coordinates of each occupied cell, sorted (cx, cy, cz).
    cell_z:    (n_cells,) int64 the cz column of cell_xyz (contiguous, for binary search).
    col_start: (dims[0] * dims[1] + 1,) int64 first cell of each (cx, cy) column.
    origin:    (3,) float64; cell, edge: float; dims: (3,) int64 number of cells per axis.
    """

    coords: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sz: np.ndarray
    order: np.ndarray
    start: np.ndarray
    cell_xyz: np.ndarray
    cell_z: np.ndarray
    col_start: np.ndarray
    origin: np.ndarray
    cell: float
    edge: float
    dims: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.cell_xyz.shape[0])


@njit(cache=True, nogil=True)
def _cell_keys(pts, origin, cell, dims):
    """(M,) int64 key (cx * ny + cy) * nz + cz of each point's cell."""
    m = pts.shape[0]
    keys = np.empty(m, np.int64)
    inv = 1.0 / cell
    ny, nz = dims[1], dims[2]
    for i in range(m):
        cx = np.int64(np.floor((np.float64(pts[i, 0]) - origin[0]) * inv))
        cy = np.int64(np.floor((np.float64(pts[i, 1]) - origin[1]) * inv))
        cz = np.int64(np.floor((np.float64(pts[i, 2]) - origin[2]) * inv))
        keys[i] = (cx * ny + cy) * nz + cz
    return keys


@njit(cache=True, nogil=True)
def _assemble(pts, keys, order, dims):
    """Cells, columns and sorted coordinates from points sorted by cell key (see Grid)."""
    m = pts.shape[0]
    ny, nz = dims[1], dims[2]
    n_cells = 0
    prev = -1
    for t in range(m):
        k = keys[order[t]]
        if k != prev:
            n_cells += 1
            prev = k
    start = np.empty(n_cells + 1, np.int64)
    cell_xyz = np.empty((n_cells, 3), np.int64)
    col_start = np.zeros(dims[0] * ny + 1, np.int64)
    sx = np.empty(m, np.float32)
    sy = np.empty(m, np.float32)
    sz = np.empty(m, np.float32)
    c = -1
    prev = -1
    for t in range(m):
        i = order[t]
        k = keys[i]
        if k != prev:
            c += 1
            prev = k
            start[c] = t
            col = k // nz
            cell_xyz[c, 0] = col // ny
            cell_xyz[c, 1] = col % ny
            cell_xyz[c, 2] = k % nz
            col_start[col + 1] += 1
        sx[t] = pts[i, 0]
        sy[t] = pts[i, 1]
        sz[t] = pts[i, 2]
    start[n_cells] = m
    for col in range(dims[0] * ny):
        col_start[col + 1] += col_start[col]
    return sx, sy, sz, start, cell_xyz, col_start


def build_grid(coords: np.ndarray, integer: bool, cell: float | None = None) -> Grid:
    """Grid over coords ((M, 3) float32, M >= 1, finite).

    integer: the coordinates are all integers (enables the tighter integer cell bounds).
    cell: cell side; by default a power of two putting 1.5 to 6 points in an occupied cell on average.
    """
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    m = coords.shape[0]
    if m == 0:
        raise ValueError("build_grid needs at least one point")
    lo = coords.min(axis=0).astype(np.float64)
    hi = coords.max(axis=0).astype(np.float64)
    origin = np.floor(lo)
    span = hi - origin
    # smallest power of two keeping the dense column index and the cell keys small
    min_cell = 2.0 ** np.ceil(np.log2(max(np.sqrt((span[0] + 1) * (span[1] + 1) / MAX_COLUMNS),
                                          float(np.max(span) + 1) / (1 << 20), 1e-30)))
    if cell is not None:
        return _build_with(coords, origin, span, max(float(cell), min_cell), integer)
    # start from the spacing a surface would have, then adjust to 1.5..6 points per occupied cell
    floor_cell = max(min_cell, 1.0 if integer else 0.0)
    ext = np.maximum(hi - lo, 1e-12)
    area = 2.0 * (ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2])
    spacing = max(float(np.sqrt(area / m)), 1e-12)
    cell = max(2.0 ** np.round(np.log2(2.0 * spacing)), floor_cell)
    grid = _build_with(coords, origin, span, cell, integer)
    tried = {grid.cell}
    for _ in range(8):
        if grid.n_cells == 1:
            break
        ratio = m / grid.n_cells
        if ratio < 1.5:
            nxt = grid.cell * 2.0
        elif ratio > 6.0 and grid.cell / 2.0 >= floor_cell:
            nxt = grid.cell / 2.0
        else:
            break
        if nxt in tried:  # oscillating between two sizes: keep this one
            break
        tried.add(nxt)
        grid = _build_with(coords, origin, span, nxt, integer)
    return grid


def _build_with(coords: np.ndarray, origin: np.ndarray, span: np.ndarray, cell: float, integer: bool) -> Grid:
    dims = (np.floor(span / cell) + 1).astype(np.int64)
    while dims[0] * dims[1] > MAX_COLUMNS:  # float rounding at the limit
        cell *= 2.0
        dims = (np.floor(span / cell) + 1).astype(np.int64)
    keys = _cell_keys(coords, origin, cell, dims)
    nbits = int(dims[0] * dims[1] * dims[2] - 1).bit_length()
    order = radix_argsort(keys, nbits, np.arange(len(coords), dtype=np.int32))
    sx, sy, sz, start, cell_xyz, col_start = _assemble(coords, keys, order, dims)
    return Grid(coords=coords, sx=sx, sy=sy, sz=sz, order=order, start=start, cell_xyz=cell_xyz,
                cell_z=np.ascontiguousarray(cell_xyz[:, 2]), col_start=col_start, origin=origin,
                cell=cell, edge=1.0 if integer else 0.0, dims=dims)
