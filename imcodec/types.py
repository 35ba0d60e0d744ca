"""Core data types: frozen dataclasses and str-Enums shared by every module.

Arrays inside the dataclasses are not copied; treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np


class PlyFormat(str, Enum):
    """PLY body encodings."""

    binary = "binary"  # binary_little_endian
    binary_big_endian = "binary_big_endian"
    ascii = "ascii"


@dataclass(frozen=True, eq=False)
class PointCloud:
    """A point cloud.

    points:  (N, 3) float64 positions (integer-valued for voxelised clouds).
    colors:  (N, 3) uint8 or uint16 RGB, or None.
    normals: (N, 3) float32, or None.
    extra:   other per-vertex properties, name -> (N,) array of the file's dtype, in file order.
    point_dtype: numpy dtype name the positions had on disk (kept when writing back, e.g. by ``convert``).
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    point_dtype: str = "float32"

    def __post_init__(self) -> None:
        n = self.points.shape[0]
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {self.points.shape}")
        for name, arr in (("colors", self.colors), ("normals", self.normals)):
            if arr is not None and arr.shape != (n, 3):
                raise ValueError(f"{name} must be ({n}, 3), got {arr.shape}")
        for name, arr in self.extra.items():
            if arr.shape[0] != n:
                raise ValueError(f"extra property {name!r} has {arr.shape[0]} values for {n} points")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def has_colors(self) -> bool:
        return self.colors is not None

    def with_(self, **changes) -> "PointCloud":
        """A copy with some fields replaced (dataclasses.replace)."""
        from dataclasses import replace

        return replace(self, **changes)


@dataclass(frozen=True)
class Frame:
    """One frame of a sequence: its file and its frame number (from the name, or its position)."""

    path: Path
    index: int
