"""Shared fixtures: small seeded clouds (empty, one point, duplicates, coloured) and a CLI runner."""

from __future__ import annotations

import os

import numpy as np
import pytest

from imcodec.types import PointCloud

# Numba's on-disk cache lives in the package's __pycache__; keep tests single-threaded and quiet.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


# modules that switch every kernel to the Numba JIT for the rest of the process: their own Numba kernels,
# or kernels outside the AOT build's workload (test_raht's transform helpers)
_JIT_SWITCHING = {"test_raht.py": 1, "test_jit.py": 2, "test_entropy.py": 2}


def pytest_collection_modifyitems(session, config, items):
    """Run the modules that switch to the Numba JIT last, so that the tests before them exercise the
    ahead-of-time library where ``make setup`` built one (the codecs as users run them)."""
    items.sort(key=lambda item: _JIT_SWITCHING.get(item.fspath.basename, 0))


def make_surface(n: int = 500, bits: int = 8, seed: int = 0, color: bool = False) -> PointCloud:
    """Voxelised points on a sphere of the given grid: integer float64 coords, unique, seeded."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n * 3, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = (1 << bits) * 0.4
    pts = np.unique(np.rint(v * r + (1 << bits) / 2), axis=0)[:n]
    cols = None
    if color:
        cols = np.clip(pts * 255.0 / (1 << bits) + rng.normal(0, 3, pts.shape), 0, 255).astype(np.uint8)
    return PointCloud(points=pts.astype(np.float64), colors=cols)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def surface():
    return make_surface()


@pytest.fixture
def colored_surface():
    return make_surface(color=True)


@pytest.fixture
def run_cli(capsys):
    """Run the imcodec CLI in-process: returns (exit_code, stdout, stderr)."""
    from imcodec.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
