"""Fast pictures of point clouds: an orthographic, z-buffered square-splat renderer (NumPy only, so
a one-shot command pays no JIT or cache-load time).

Each point becomes a square of ``k x k`` pixels (k = the point spacing in pixels, rounded up, so a
voxelised surface renders closed); the nearest point wins each pixel (z-buffer). Clouds with colour
show their RGB as is (16-bit colour is shown by its top 8 bits); clouds without colour are shaded
grey with a Lambert light whose normals come from the z-buffer's screen-space gradient. Several
clouds rendered together share one projection and scale, so side-by-side panels are comparable.

Views (the 8i/Owlii convention: y up): ``front`` looks along -z, ``back`` along +z, ``left`` along
+x (from the -x side), ``right`` along -x, ``top`` along -y with -z up in the picture.
"""

from __future__ import annotations

import math

import numpy as np

from imcodec.errors import UsageError
from imcodec.types import PointCloud

# view -> (right, up, toward the viewer): image x, image y (up), depth (larger = nearer)
VIEWS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    "front": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "back": ((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
    "left": ((0, 0, 1), (0, 1, 0), (-1, 0, 0)),
    "right": ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
    "top": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
}
MARGIN = 0.03  # of the panel size, on every side
MAX_SPLAT = 64  # largest splat edge in pixels
_GREY = 200
_LIGHT = np.array([-0.35, 0.45, 0.82])


def splat(px: np.ndarray, py: np.ndarray, depth: np.ndarray, k: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffered square splats: point i covers pixels [px, px+k) x [py, py+k); at each pixel the
    largest depth (nearest point) wins, ties going to the lowest point index.

    px, py: (N,) int64 top-left pixels; depth: (N,) float64. Returns (zbuf (H, W) float64, -inf where
    empty; owner (H, W) int64, the winning point's index or -1). Two ufunc.at passes per splat
    offset (O(N k^2) time, O(N) memory) - no sort, no compiled kernel to load.
    """
    n = len(px)
    zbuf = np.full(height * width, -np.inf)
    offsets = [(dx, dy) for dy in range(k) for dx in range(k)]

    def covered(dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = px + dx, py + dy
        ok = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        idx = np.flatnonzero(ok) if not ok.all() else np.arange(n)
        return idx, y[idx] * width + x[idx]

    for dx, dy in offsets:
        idx, lin = covered(dx, dy)
        np.maximum.at(zbuf, lin, depth[idx])
    best = np.full(height * width, n, dtype=np.int64)
    for dx, dy in offsets:
        idx, lin = covered(dx, dy)
        win = depth[idx] == zbuf[lin]
        np.minimum.at(best, lin[win], idx[win])
    owner = np.where(best < n, best, -1)
    return zbuf.reshape(height, width), owner.reshape(height, width)


def _project(points: np.ndarray, view: str) -> np.ndarray:
    """(N, 3) float64 columns: image-right, image-up, depth toward the viewer (each view axis is a
    signed coordinate axis, so this is a column selection)."""
    out = np.empty((len(points), 3), dtype=np.float64)
    for j, axis in enumerate(VIEWS[view]):
        a = int(np.flatnonzero(axis)[0])
        np.multiply(points[:, a], float(axis[a]), out=out[:, j])
    return out


def point_spacing(points: np.ndarray) -> float:
    """Typical distance between neighbouring points: the grid step of voxelised clouds (median gap
    between distinct x values), but at least half the spacing that N points spread evenly over half
    the bounding box's surface would have (for clouds that are not on a grid)."""
    n = len(points)
    if n < 2:
        return 1.0
    xs = np.unique(points[:: max(1, n // 65536), 0])  # a subsample finds the same grid step
    grid = float(np.median(np.diff(xs))) if len(xs) > 1 else 0.0
    ext = points.max(axis=0) - points.min(axis=0)
    area = ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2]
    density = math.sqrt(area / n) if area > 0 else 0.0
    s = max(grid, 0.5 * density)
    return s if s > 0 else 1.0


def _shade(zbuf: np.ndarray, hit: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) float factors in [0.25, 1]: Lambert shading from z-buffer normals (pixel units)."""
    z = np.where(hit, zbuf * scale, 0.0)
    fill = z[hit].min() if hit.any() else 0.0
    z = np.where(hit, z, fill)
    gy, gx = np.gradient(z)
    gx = np.clip(gx, -4.0, 4.0)
    gy = np.clip(gy, -4.0, 4.0)
    # image rows go down while "up" is +y: the surface normal is (-dz/dx, +dz/drow, 1)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    lam = (-gx * _LIGHT[0] + gy * _LIGHT[1] + _LIGHT[2]) / norm
    return 0.25 + 0.75 * np.clip(lam, 0.0, 1.0)


def render_clouds(clouds: list[PointCloud], view: str = "front", size: int = 1024,
                  point_size: int | None = None, background: tuple[int, int, int] = (255, 255, 255),
                  crop: bool = True) -> list[np.ndarray]:
    """One (size, W, 3) uint8 picture per cloud, all with the same projection and scale; W = size,
    or with ``crop`` the joint bounding box's width plus margins (narrower for standing figures).

    point_size: splat edge in pixels (default: each cloud's point spacing at this scale, rounded up).
    Raises UsageError for an unknown view, a size outside 16..8192 or a bad point size.
    """
    if view not in VIEWS:
        raise UsageError(f"--view {view!r} is not one of {', '.join(VIEWS)}")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 8192:
        raise UsageError(f"--size must be an integer in 16..8192, got {size!r}")
    if point_size is not None and not 1 <= point_size <= MAX_SPLAT:
        raise UsageError(f"--point-size must be in 1..{MAX_SPLAT} pixels, got {point_size}")
    proj = [_project(c.points, view) for c in clouds]
    nonempty = [p for p in proj if len(p)]
    if nonempty:
        lo = np.min([p[:, :2].min(axis=0) for p in nonempty], axis=0)
        hi = np.max([p[:, :2].max(axis=0) for p in nonempty], axis=0)
    else:
        lo, hi = np.zeros(2), np.ones(2)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    if span <= 0:  # one point, or points only along the view axis: a unit-sized view
        span = 1.0
    inner = size * (1.0 - 2.0 * MARGIN)
    scale = inner / span
    width = size if crop is False else int(min(size, max(16, math.ceil((hi[0] - lo[0]) * scale + 2 * MARGIN * size))))
    off = (np.array([width, size]) - (hi - lo) * scale) / 2.0  # centre the joint bounding box
    out = []
    for cloud, p in zip(clouds, proj):
        img = np.empty((size, width, 3), dtype=np.uint8)
        img[:] = np.asarray(background, dtype=np.uint8)
        if len(p):
            k = point_size or min(MAX_SPLAT, max(1, math.ceil(point_spacing(cloud.points) * scale - 1e-6)))
            cx = (p[:, 0] - lo[0]) * scale + off[0]
            cy = size - ((p[:, 1] - lo[1]) * scale + off[1])
            px = np.floor(cx - k / 2.0 + 0.5).astype(np.int64)
            py = np.floor(cy - k / 2.0 + 0.5).astype(np.int64)
            if cloud.colors is not None:
                rgb = cloud.colors if cloud.colors.dtype == np.uint8 else (cloud.colors >> 8).astype(np.uint8)
            else:
                rgb = np.full((len(p), 3), _GREY, dtype=np.uint8)
            zbuf, owner = splat(px, py, np.ascontiguousarray(p[:, 2]), int(k), size, width)
            hit = owner >= 0
            img[hit] = rgb[owner[hit]]
            if cloud.colors is None and hit.any():
                f = _shade(zbuf, hit, scale)
                img[hit] = np.clip(img[hit] * f[hit][:, None], 0, 255).astype(np.uint8)
        out.append(img)
    return out


def compose(panels: list[np.ndarray], labels: list[str] | None = None, gap: int = 8,
            background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Panels side by side (gap pixels apart), each with its label centred above it when given.
    Returns (H, W, 3) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    h = max(p.shape[0] for p in panels)
    band = max(18, h // 22) if labels else 0
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.empty((h + band, width, 3), dtype=np.uint8)
    canvas[:] = np.asarray(background, dtype=np.uint8)
    x = 0
    for p in panels:
        canvas[band:band + p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + gap
    if not labels:
        return canvas
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)

    def font_of(px: int):
        try:
            return ImageFont.load_default(size=px)
        except TypeError:  # Pillow < 10.1: fixed-size bitmap font
            return ImageFont.load_default()

    x = 0
    for p, text in zip(panels, labels):
        room = max(8, p.shape[1] - 6)
        px = int(band * 0.7)
        font = font_of(px)
        # shrink the font to fit the panel, then shorten the middle of the text if still too wide
        while px > 9 and draw.textlength(text, font=font) > room:
            px -= 1
            font = font_of(px)
        shown = text
        keep = len(text)
        while keep > 2 and draw.textlength(shown, font=font) > room:
            keep -= 1
            shown = text[: (keep + 1) // 2] + "\u2026" + text[len(text) - keep // 2:]
        left, top, right, bottom = draw.textbbox((0, 0), shown, font=font)
        tx = x + max(0, (p.shape[1] - (right - left)) // 2) - left
        ty = (band - (bottom - top)) // 2 - top
        draw.text((tx, ty), shown, fill=(0, 0, 0), font=font)
        x += p.shape[1] + gap
    return np.asarray(img)

