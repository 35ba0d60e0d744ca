"""Synthetic voxelised surfaces and moving sequences: sphere, torus, box and a human-like body.

Each shape is a union of primitives (ellipsoids, capsules, a torus, a box). A voxel belongs to the
cloud when its centre is inside the solid and at least one of its 6 neighbours is outside: the inner
boundary shell, which is closed (every 6-connected path from inside to outside meets it) and holds
no interior points where primitives overlap. The kernels are in :mod:`imcodec.synth_kernels`; a
10-bit body (~0.65 M points, like the 8i/Owlii scans) takes about 0.3 s.

Motion (``t`` in frames): ``rigid`` rotates the object about its vertical (y) axis and translates it;
``wave`` swings the body's arms and legs, or runs a travelling ripple over the other shapes (each z
column is shifted in depth by a sum of sines of (x, y) and t, up to 2% of the object's size).
Everything is a function of (shape, bits, seed, t, motion): the same arguments give the same bytes.
Above 12 bits the object keeps its 12-bit size (a 4096-voxel extent) at the centre of the grid.
"""

from __future__ import annotations

import math

import numpy as np

from imcodec.errors import UsageError
from imcodec.synth_kernels import BOX, CAPSULE, ELLIPSOID, NPARAM, TORUS, shell_voxels
from imcodec.types import PointCloud

SHAPES = ("sphere", "torus", "box", "body")
MOTIONS = ("rigid", "wave")


# ------------------------------------------------------------------------------------- geometry

def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """(3, 3) rotation Rz(az) Ry(ay) Rx(ax), angles in radians."""
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _framed(kind: int, centre, rot: np.ndarray, sizes) -> np.ndarray:
    """Parameter row of a primitive with a local frame; rot maps local -> world (rows stored: R^T)."""
    row = np.zeros(NPARAM)
    row[0:3] = centre
    row[3:12] = rot.T.reshape(-1)
    row[12:12 + len(sizes)] = sizes
    return row


def _capsule(a, b, r: float) -> np.ndarray:
    row = np.zeros(NPARAM)
    row[0:3], row[3:6], row[6] = a, b, r
    return row


def _radius(kind: int, row: np.ndarray) -> tuple[np.ndarray, float]:
    """A bounding sphere (centre, radius) of one primitive."""
    if kind == CAPSULE:
        a, b = row[0:3], row[3:6]
        return (a + b) / 2, float(np.linalg.norm(b - a) / 2 + row[6])
    if kind == TORUS:
        return row[0:3], float(row[12] + row[13])
    if kind == BOX:
        return row[0:3], float(np.linalg.norm(row[12:15]))
    return row[0:3], float(row[12:15].max())


def _swing(d: np.ndarray, angle: float) -> np.ndarray:
    """Rotate direction d about the x axis so that a positive angle moves a hanging limb forward (+z)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([d[0], d[1] * c + d[2] * s, -d[1] * s + d[2] * c])


def _body(g: np.ndarray, t: float, wave: bool) -> tuple[list, list, list]:
    """Primitives of a standing figure, height 1, feet at y = 0, facing +z (normalised units).

    g: (12,) seeded values in [-1, 1] that vary girth, proportions and pose.
    Returns (kinds, rows, part classes: 0 skin, 1 shirt, 2 trousers, 3 shoes).
    """
    kinds, rows, parts = [], [], []

    def add(kind, row, cls):
        kinds.append(kind)
        rows.append(row)
        parts.append(cls)

    girth, head = 1 + 0.08 * g[0], 1 + 0.05 * g[1]
    eye = np.eye(3)
    add(ELLIPSOID, _framed(ELLIPSOID, (0, 0.70, 0), eye, np.array([0.135, 0.13, 0.085]) * girth), 1)
    add(ELLIPSOID, _framed(ELLIPSOID, (0, 0.56, 0), eye, np.array([0.12, 0.11, 0.08]) * girth), 2)
    add(CAPSULE, _capsule((-0.13, 0.785, 0), (0.13, 0.785, 0), 0.045 * girth), 1)
    add(CAPSULE, _capsule((0, 0.80, 0), (0, 0.87, 0.005), 0.035 * girth), 0)
    tilt = _rotation(0.08 * g[2], 0.1 * g[3], 0.0)
    add(ELLIPSOID, _framed(ELLIPSOID, (0, 0.925, 0.005), tilt, np.array([0.058, 0.07, 0.065]) * head), 0)
    phase = 2 * math.pi * t / 20.0
    swing = math.radians(25.0) * math.sin(phase) if wave else 0.0
    for side in (-1.0, 1.0):
        # arm: shoulder -> elbow -> wrist -> hand, hanging out by `out` and swinging by +-swing
        out = math.radians(12.0 + 6.0 * g[4])
        beta = side * swing + math.radians(4.0 * g[5])
        bend = math.radians(12.0 + 8.0 * g[6]) + max(0.0, beta) * 0.8
        shoulder = np.array([side * 0.175 * girth, 0.785, 0.0])
        d_up = _swing(np.array([side * math.sin(out), -math.cos(out), 0.0]), beta)
        d_fore = _swing(np.array([side * math.sin(out * 0.7), -math.cos(out * 0.7), 0.0]), beta + bend)
        elbow = shoulder + 0.17 * d_up
        wrist = elbow + 0.15 * d_fore
        add(CAPSULE, _capsule(shoulder, elbow, 0.036 * girth), 1)
        add(CAPSULE, _capsule(elbow, wrist, 0.030 * girth), 0)
        add(CAPSULE, _capsule(wrist + 0.01 * d_fore, wrist + 0.075 * d_fore, 0.026), 0)
        # leg: hip -> knee -> ankle -> toe, swinging opposite to the arm on the same side
        spread = math.radians(3.0 + 2.0 * g[7])
        phi = -side * 0.7 * swing + math.radians(3.0 * g[8])
        knee_flex = math.radians(4.0 + 3.0 * g[9]) + max(0.0, phi) * 0.9
        hip = np.array([side * 0.085 * girth, 0.50, 0.0])
        d_thigh = _swing(np.array([side * math.sin(spread), -math.cos(spread), 0.0]), phi)
        d_shin = _swing(np.array([0.0, -1.0, 0.0]), phi - knee_flex)
        knee = hip + 0.245 * d_thigh
        ankle = knee + 0.235 * d_shin
        toe_dir = _swing(np.array([side * 0.15, 0.0, 1.0]) / math.hypot(0.15, 1.0), phi - knee_flex)
        add(CAPSULE, _capsule(hip, knee, 0.056 * girth), 2)
        add(CAPSULE, _capsule(knee, ankle, 0.043 * girth), 2)
        add(CAPSULE, _capsule(ankle - 0.02 * toe_dir, ankle + 0.11 * toe_dir + (0, -0.012, 0), 0.03), 3)
    return kinds, rows, parts


def _scene(shape: str, bits: int, seed: int, t: float, motion: str):
    """All kernel inputs for one frame, plus part classes and the rigid motion (rot, pivot, shift)."""
    size = 1 << bits
    ext = float(min(size, 4096))  # the object's scale in voxels
    centre = np.full(3, (size - 1) / 2.0)
    rng = np.random.default_rng([seed, 0x5EED])
    g = rng.uniform(-1.0, 1.0, 16)
    jitter = centre + 0.01 * ext * g[13:16]
    waves = np.zeros((0, 4))
    if shape == "body":
        kinds, rows, parts = _body(g[:12], t, motion == "wave")
        height = 0.92 * ext
        for kind, row in zip(kinds, rows):  # normalised -> voxels: feet near the bottom of the grid
            if kind == CAPSULE:
                row[0:3] = jitter + height * (row[0:3] - (0, 0.5, 0))
                row[3:6] = jitter + height * (row[3:6] - (0, 0.5, 0))
                row[6] *= height
            else:
                row[0:3] = jitter + height * (row[0:3] - (0, 0.5, 0))
                row[12:15] *= height
    elif shape == "sphere":
        r = 0.30 * ext * (1 + 0.05 * g[0])
        kinds, rows, parts = [ELLIPSOID], [_framed(ELLIPSOID, jitter, np.eye(3), (r, r, r))], [0]
    elif shape == "torus":
        rot = _rotation(1.15 + 0.15 * g[0], 0.3 * g[1], 0.25 + 0.2 * g[2])  # the hole faces +z
        sizes = (0.27 * ext * (1 + 0.05 * g[3]), 0.09 * ext * (1 + 0.1 * g[4]))
        kinds, rows, parts = [TORUS], [_framed(TORUS, jitter, rot, sizes)], [0]
    else:  # box
        rot = _rotation(0.35 + 0.15 * g[0], 0.5 + 0.2 * g[1], 0.2 * g[2])
        half = np.array([0.20, 0.17, 0.14]) * ext * (1 + 0.05 * g[3:6])
        kinds, rows, parts = [BOX], [_framed(BOX, jitter, rot, half)], [0]
    if motion == "wave" and shape != "body":
        # a depth ripple: two sines of (x, y) travelling across the object, shifting each z column
        angles = 2 * math.pi * rng.uniform(0.0, 1.0, 2)
        waves = np.zeros((2, 4))
        for w, (amp, length, period) in enumerate(((0.012, 0.22, 16.0), (0.007, 0.13, 11.0))):
            k = 2 * math.pi / (length * ext)
            phase = 2 * math.pi * (g[6 + w] - t / period)
            waves[w] = amp * ext, k * math.cos(angles[w]), k * math.sin(angles[w]), phase
    if motion == "rigid":
        theta = math.radians(2.0) * t
        rot = _rotation(0.0, theta, 0.0)
        shift = ext * np.array([0.02 * math.sin(2 * math.pi * t / 30), 0.0, 0.015 * math.sin(2 * math.pi * t / 45)])
    else:
        rot, shift = np.eye(3), np.zeros(3)
    prims = np.ascontiguousarray(np.array(rows, dtype=np.float64))
    bsph = np.zeros((len(rows), 4))
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    reach = np.array([2.0, 2.0, 2.0 + waves[:, 0].sum()])  # margin; the ripple moves columns along z
    for i, (kind, row) in enumerate(zip(kinds, rows)):
        c, r = _radius(kind, row)
        bsph[i, :3], bsph[i, 3] = c, r + 1.0
        c = rot @ (c - centre) + centre + shift
        lo, hi = np.minimum(lo, c - r - reach), np.maximum(hi, c + r + reach)
    lo = np.clip(np.floor(lo), 0, size - 1).astype(np.int64)
    hi = np.clip(np.ceil(hi), 0, size - 1).astype(np.int64)
    kernel_args = (prims, np.asarray(kinds, np.int64), bsph, np.ascontiguousarray(rot.T), centre, shift,
                   np.ascontiguousarray(waves), lo, hi, size)
    return kernel_args, np.asarray(parts, np.int64), (rot, centre, shift)


# --------------------------------------------------------------------------------------- colours

_BODY_PALETTE = np.array([[224, 172, 140], [52, 98, 170], [60, 60, 72], [120, 70, 40]], dtype=np.float64)


def _times(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """a @ m for (N, 3) a and a (3, K) m, without BLAS (faster for a 3-wide inner dimension)."""
    return a[:, 0:1] * m[0] + a[:, 1:2] * m[1] + a[:, 2:3] * m[2]


def _colors(points: np.ndarray, cls: np.ndarray, shape: str, ext: float, seed: int, t: float,
            motion: tuple) -> np.ndarray:
    """(N, 3) uint8: a base colour per part, smooth bands fixed to the object, a little seeded noise."""
    rot, pivot, shift = motion
    local = _times(points - (pivot + shift), rot) + pivot  # rows: R^T (p - pivot - shift) + pivot
    rng = np.random.default_rng([seed, 0xC010])
    base = _BODY_PALETTE[cls] if shape == "body" else rng.uniform(70, 190, 3)
    dirs = rng.normal(size=(3, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, 3)
    # shading-like brightness bands shared by the channels, plus a milder per-channel tint
    light = 1.0 + 0.18 * np.sin(local[:, 1:2] * (2 * np.pi / (0.05 * ext)) + phase[0])
    col = np.sin(_times(local, dirs.T * (2 * np.pi / (0.2 * ext))) + phase)
    col *= 14.0
    col += base * light
    noise = np.random.default_rng([seed, 0x0015E, int(round(t * 1000)) & 0xFFFFFFFF])
    col += noise.normal(0.0, 2.0, col.shape)
    return np.clip(np.rint(col, out=col), 0, 255, out=col).astype(np.uint8)


# ------------------------------------------------------------------------------------------- API

def _check(shape: str, bits: int, seed: int, motion: str) -> None:
    if shape not in SHAPES:
        raise UsageError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if motion not in MOTIONS:
        raise UsageError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 3 <= bits <= 16:
        raise UsageError(f"bits must be an integer in 3..16, got {bits!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")


def make_cloud(shape: str, bits: int = 10, color: bool = False, seed: int = 0, t: float = 0.0,
               motion: str = "rigid") -> PointCloud:
    """One voxelised closed surface at time ``t`` (frames) of the given motion.

    Returns a PointCloud with points (N, 3) float64 holding unique integers in 0..2^bits-1, sorted
    by (x, y, z); point_dtype "float32"; colors (N, 3) uint8 when ``color`` else None.
    Raises UsageError for an unknown shape or motion, bits outside 3..16, a negative seed, or t not finite.
    """
    _check(shape, bits, seed, motion)
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not math.isfinite(t):
        raise UsageError(f"t must be a finite number of frames, got {t!r}")
    args, part_cls, rigid = _scene(shape, int(bits), int(seed), float(t), motion)
    coords, part = shell_voxels(*args)  # already sorted by (x, y, z)
    points = coords.astype(np.float64)
    colors = None
    if color:
        colors = _colors(points, part_cls[part], shape, float(min(1 << bits, 4096)), int(seed),
                         float(t), rigid)
    return PointCloud(points=points, colors=colors, point_dtype="float32")


def make_sequence(shape: str = "sphere", bits: int = 10, frames: int = 1, motion: str = "rigid",
                  color: bool = False, seed: int = 0) -> list[PointCloud]:
    """``frames`` clouds of :func:`make_cloud` at t = 0, 1, ..., frames - 1."""
    _check(shape, bits, seed, motion)
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise UsageError(f"frames must be an integer >= 1, got {frames!r}")
    return [make_cloud(shape, bits, color=color, seed=seed, t=float(i), motion=motion) for i in range(frames)]
