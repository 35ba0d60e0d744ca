"""imcodec.jit: argument type keys agree with Numba's typing, the fallback to Numba, and the AOT library.

The AOT tests need the library that ``make setup`` builds (``python -m imcodec.jit_build``); they
skip without it, except on CI (``CI=true``), where a missing library is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from imcodec import jit
from imcodec.jit_build import _type_key


def _values():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    ro = np.frombuffer(b"\x01\x02\x03\x04", dtype=np.uint8)
    return [
        np.zeros(5, np.int64), np.zeros(5, np.int32), np.zeros(3, np.uint8), np.zeros(2, np.bool_),
        np.zeros(2, np.uint16), a, a.T, a[:, ::2], np.asfortranarray(a), ro, np.zeros((0, 3), np.float64),
        3, -7, 2.5, True, False, np.int32(4), np.uint8(1), np.float32(1.5), np.bool_(True), np.int64(9),
    ]


@pytest.mark.parametrize("value", _values(), ids=lambda v: type(v).__name__ + str(getattr(v, "dtype", "")))
def test_value_key_matches_numba_typing(value):
    import numba

    assert jit.value_key(value) == _type_key(numba.typeof(value))


def test_untyped_arguments_have_no_key():
    assert jit.arg_key((np.zeros(2), None)) is None
    assert jit.arg_key((np.zeros(2), (1, 2))) is None
    assert jit.arg_key((1 << 70,)) is None


def _sum_sq(x, scale):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s * scale


def test_kernel_without_library_runs_through_numba():
    k = jit.njit(cache=False)(_sum_sq)  # defined outside the kernel packages: never in a library
    assert k.group is None
    x = np.linspace(0.0, 1.0, 11)
    assert k.aot_variant((x, 2.0)) is None
    assert k(x, 2.0) == pytest.approx(_sum_sq(x, 2.0), rel=1e-15)
    assert k.signatures  # attribute access reaches the Numba dispatcher


def test_group_of():
    assert jit.group_of("imcodec.octree.raht") == "octree"
    assert jit.group_of("imcodec.entropy.rangecoder") == "entropy"
    assert jit.group_of("imcodec.synth_kernels") == "synth"
    assert jit.group_of("imcodec.learned.sparse") is None
    assert jit.group_of("tests.test_jit") is None


def test_digest_depends_on_group():
    assert jit.source_digest("metrics") != jit.source_digest("octree")
    assert len(jit.source_digest("vpcc")) == 16


def _library(group: str) -> str | None:
    info = jit.aot_info().get(group, {})
    if info.get("library"):
        return info["library"]
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"no AOT library for the {group} kernels ({info}); make setup builds it")
    pytest.skip(f"no AOT library for the {group} kernels (python -m imcodec.jit_build)")


def _run(code: str, force_jit: bool, tmp_path) -> dict:
    env = dict(os.environ)
    env.pop(jit.ENV_FORCE_JIT, None)
    if force_jit:
        env[jit.ENV_FORCE_JIT] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_WORK = """
import json, sys
from imcodec import api
api.synth('a.ply', shape='body', bits=8, color=True, seed=5)
enc = api.encode('a.ply', 'a.imc', codec='octree', options={'scale': 0.5, 'attr_qp': 30})
dec = api.decode('a.imc', 'b.ply')
m = api.metrics('a.ply', 'b.ply', peak=255, color=True)
data = open('a.imc', 'rb').read()
print(json.dumps({'bytes': data.hex(), 'd1': m['d1_psnr'], 'd2': m['d2_psnr'], 'y': m['y_psnr'],
                  'cb': m['cb_psnr'], 'numba': 'numba' in sys.modules}))
"""


def test_aot_library_gives_numba_results_without_numba(tmp_path):
    _library("metrics")
    _library("octree")
    _library("synth")
    aot = _run(_WORK, False, tmp_path)
    ref = _run(_WORK, True, tmp_path)
    assert ref["numba"] is True
    assert aot["numba"] is False  # every kernel of this workload came from the library
    for key in ("bytes", "d1", "d2", "y", "cb"):
        assert aot[key] == ref[key], key


_WORK_VPCC = """
import hashlib, json, sys
import numpy as np
from imcodec import api
from imcodec.vpcc.metadata import decode_raw, encode_raw, sort_raw
rng = np.random.default_rng(1)
raw = sort_raw(np.unique(rng.integers(0, 1000, (50, 3)), axis=0))
data = encode_raw(raw)
back = decode_raw(data)  # the kernels get a read-only view of the bytes
api.synth('s.ply', shape='body', bits=7, color=True, seed=2)
api.encode('s.ply', 's.imc', codec='vpcc', options={'rate': 'r3'})
api.decode('s.imc', 't.ply')
print(json.dumps({'raw_ok': bool(np.array_equal(back, raw)), 'raw': data.hex(),
                  'stream': hashlib.sha256(open('s.imc', 'rb').read()).hexdigest(),
                  'decoded': hashlib.sha256(open('t.ply', 'rb').read()).hexdigest()}))
"""


def test_aot_library_matches_numba_on_read_only_buffers_and_vpcc(tmp_path):
    """Read-only inputs (bitstream bytes) run the writable AOT variant on a copy; V-PCC coding through
    the entropy and vpcc libraries gives Numba's bytes."""
    _library("entropy")
    _library("vpcc")
    aot = _run(_WORK_VPCC, False, tmp_path)
    ref = _run(_WORK_VPCC, True, tmp_path)
    assert aot["raw_ok"] and ref["raw_ok"]
    for key in ("raw", "stream", "decoded"):
        assert aot[key] == ref[key], key
