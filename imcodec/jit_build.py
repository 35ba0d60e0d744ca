"""Build the ahead-of-time compiled kernel library that :mod:`imcodec.jit` loads.

``python -m imcodec.jit_build [--out DIR] [--json]`` (``make setup`` runs it):

1. runs a small workload through the public API with Numba JIT (synthetic frames: metrics with and
   without colour and normals, octree lossless/lossy/colour/sequence coding, V-PCC coding when
   ffmpeg is available, synth), which records the argument types each kernel is really called with;
2. exports every (kernel, argument types) pair with ``numba.pycc`` into one extension module
   ``imcodec_kernels_<digest>`` plus a JSON manifest, compiled for this machine's CPU;
3. writes both atomically into ``imcodec/_aot/`` (or ``--out``; ``$IMCODEC_AOT_DIR`` is searched too).

Any argument types the workload did not see still run, through Numba. Needs a C compiler; without
one the build fails with a clear message and imcodec keeps using Numba.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _workload(tmp: str) -> list[str]:
    """Exercise the kernels through the library API; returns the steps that ran."""
    from imcodec import api
    from imcodec.io.ply import read_ply, write_ply
    from imcodec.types import PointCloud

    steps = []
    a = os.path.join(tmp, "a.ply")
    api.synth(a, shape="body", bits=9, color=True, seed=1)
    seq = os.path.join(tmp, "seq")
    api.synth(seq, shape="body", bits=8, frames=2, color=True, seed=2)
    for shape in ("sphere", "torus", "box"):
        api.synth(os.path.join(tmp, f"{shape}.ply"), shape=shape, bits=7, seed=3)
    steps.append("synth")

    cloud = read_ply(a)
    dup = PointCloud(np.concatenate([cloud.points, cloud.points[:50]]),
                     np.concatenate([cloud.colors, cloud.colors[:50]]))
    write_ply(dup, os.path.join(tmp, "dup.ply"))
    rng = np.random.default_rng(0)
    nrm = rng.normal(size=(len(cloud), 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    write_ply(PointCloud(cloud.points, None, nrm), os.path.join(tmp, "normals.ply"))

    def octree(src, name, **opts):
        out = os.path.join(tmp, f"{name}.imc")
        api.encode(src, out, codec="octree", options=opts)
        dec = os.path.join(tmp, f"{name}_dec")
        api.decode(out, dec + "/")
        return dec

    octree(a, "lossless", lossless=True)
    octree(os.path.join(tmp, "dup.ply"), "dups", lossless=True)
    lossy = octree(a, "lossy", scale=0.5)
    octree(a, "color", lossless=True, attr_qp=28)
    octree(a, "color_lossless", lossless=True, lossless_color=True)
    octree(seq, "sequence", lossless=True)
    steps.append("octree")

    b = sorted(os.path.join(lossy, n) for n in os.listdir(lossy))[0]
    api.metrics(a, b, peak=511, color=True, hausdorff=True)
    api.metrics(a, b, peak=511, normals=os.path.join(tmp, "normals.ply"), color=True)
    api.metrics(a, os.path.join(tmp, "dup.ply"), bits=9)
    # isolated points send the neighbour searches to their ring-search fallbacks (nn.knn_range, nn.ties_range)
    far = rng.integers(0, 512, size=(300, 3)).astype(np.float64)
    write_ply(PointCloud(np.concatenate([cloud.points, far])), os.path.join(tmp, "sparse.ply"))
    api.metrics(os.path.join(tmp, "sparse.ply"), b, bits=9)
    api.metrics(b, os.path.join(tmp, "sparse.ply"), bits=9)
    c16 = (cloud.colors.astype(np.uint16) * 257)[:, :3]  # 16-bit colour PLYs
    write_ply(PointCloud(cloud.points, c16), os.path.join(tmp, "c16.ply"))
    api.metrics(os.path.join(tmp, "c16.ply"), os.path.join(tmp, "c16.ply"), bits=9, color=True)
    steps.append("metrics")

    try:
        for opts in ({"rate": "r3"}, {"lossless": True}):
            out = os.path.join(tmp, "vpcc.imc")
            api.encode(a, out, codec="vpcc", options=opts)
            api.decode(out, os.path.join(tmp, "vpcc_dec.ply"))
            if not opts.get("lossless"):  # the depth denoiser's look-up-table kernels
                api.decode(out, os.path.join(tmp, "vpcc_dn.ply"), denoise_depth=True)
        out = os.path.join(tmp, "vpcc_seq.imc")  # a group of frames: consistent packing, motion hints
        api.encode(seq, out, codec="vpcc", options={"rate": "r3", "gof": 2})
        api.decode(out, os.path.join(tmp, "vpcc_seq_dec") + "/")
        steps.append("vpcc")
    except Exception as exc:  # no ffmpeg: the V-PCC kernels stay on Numba
        steps.append(f"vpcc skipped ({exc})")
    return steps


def _writable(t):
    """The writable form of a read-only Numba array type (other types unchanged)."""
    from numba.core import types

    if isinstance(t, types.Array) and not t.mutable:
        return t.copy(readonly=False)
    return t


def _type_key(t) -> str | None:
    from numba.core import types
    from numba.np.numpy_support import as_dtype

    if isinstance(t, types.Array):
        try:
            dt = as_dtype(t.dtype).str
        except Exception:
            return None
        return f"{dt}:{t.ndim}{t.layout}{'w' if t.mutable else 'r'}{'a' if t.aligned else 'u'}"
    if isinstance(t, types.Boolean):
        return "?"
    if isinstance(t, (types.Integer, types.Float)):
        return as_dtype(t).str
    return None


def build(out_dir: str | None = None, groups: list[str] | None = None) -> dict:
    """Run the workload, compile the library, install it; returns a summary dict."""
    os.environ["IMCODEC_JIT"] = "1"  # the workload must run through Numba to record signatures
    from imcodec import jit
    from imcodec.io.files import temporary_directory

    t0 = time.perf_counter()
    jit._STATE["tables"].clear()  # forget libraries looked up before (e.g. by --if-stale)
    jit._STATE["info"].clear()
    jit.use_jit()
    with temporary_directory(prefix="imcodec-aot-") as tmp:
        steps = _workload(str(tmp))
    t1 = time.perf_counter()

    import llvmlite.binding as ll
    from numba.pycc import CC

    libraries, exports_total, kernels_total = [], 0, 0
    t_compile = 0.0
    for group in groups or list(jit.GROUPS):
        if group not in jit.GROUPS:
            raise RuntimeError(f"unknown kernel group {group!r}; groups: {', '.join(jit.GROUPS)}")
        tc = time.perf_counter()
        lib, n_exp, n_ker = _build_group(jit, group, CC, ll, out_dir)
        t_compile += time.perf_counter() - tc
        if lib:
            libraries.append(lib)
        exports_total += n_exp
        kernels_total += n_ker
    return {"libraries": libraries, "exports": exports_total, "kernels": kernels_total, "workload": steps,
            "workload_seconds": round(t1 - t0, 1), "compile_seconds": round(t_compile, 1)}


def _build_group(jit, group: str, CC, ll, out_dir: str | None) -> tuple[str | None, int, int]:
    """Compile and install one group's library; (path or None when it has no recorded calls, exports, kernels)."""
    from imcodec.errors import InputError
    from imcodec.io.files import install_extension, temporary_directory

    digest = jit.source_digest(group)
    name = jit.library_name(group, digest)
    exports: dict[str, list] = {}
    with temporary_directory(prefix="imcodec-aot-") as tmp:
        cc = CC(name)
        cc.output_dir = str(tmp)
        cc.target_cpu = ll.get_host_cpu_name()
        cc.verbose = False
        for kernel in jit._KERNELS:
            if kernel.group != group:
                continue
            disp = kernel.dispatcher()
            done = set()
            for sig in list(disp.signatures):
                # read-only arrays get the writable variant: pycc miscompiled read-only variants of
                # kernels with inlined callees (dec_uint read 0 from a read-only buffer); the proxy
                # copies read-only arguments (bitstream buffers, small) before calling it
                args = tuple(_writable(t) for t in sig)
                keys = [_type_key(t) for t in args]
                if any(k is None for k in keys) or tuple(keys) in done:
                    continue
                done.add(tuple(keys))
                export = f"k{len(exports)}"
                cc.export(export, disp.overloads[sig].signature.return_type(*args))(kernel.py_func)
                exports[export] = [kernel.key, keys]
        if not exports:
            return None, 0, 0
        try:
            _compile_releasing_gil(cc)
        except Exception as exc:  # compiler missing or failing
            raise RuntimeError(f"AOT compilation of the {group} kernels failed ({type(exc).__name__}: {exc}); "
                               "is a C compiler (gcc, python3-dev headers) installed?") from exc
        manifest = {"group": group, "digest": digest, "target_cpu": cc.target_cpu, "releases_gil": True,
                    "exports": exports}
        target = out_dir or os.environ.get("IMCODEC_AOT_DIR") or jit.aot_dirs()[-2]
        try:
            library = install_extension(tmp, name, manifest, target)
        except (OSError, InputError):  # package directory not writable: the user cache
            library = install_extension(tmp, name, manifest, jit.aot_dirs()[-1])
    return library, len(exports), len({v[0] for v in exports.values()})


def _compile_releasing_gil(cc) -> None:
    """``cc.compile()`` with Numba's ``release_gil`` flag on every export, as ``nogil=True`` does in the JIT.

    pycc builds its wrappers from a plain ``Flags()``; the wrapper then keeps the GIL while the native
    code runs. The kernels touch no Python objects between unboxing and boxing (the same condition
    under which Numba's nogil is safe), so the build swaps in flags with ``release_gil`` set.
    """
    import numba.pycc.compiler as pycc_compiler

    base = pycc_compiler.Flags

    class _ReleaseGilFlags(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _ReleaseGilFlags
    try:
        cc.compile()
    finally:
        pycc_compiler.Flags = base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imcodec.jit_build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="directory for the library (default: imcodec/_aot)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--groups", help="comma-separated groups to build (default: all)")
    ap.add_argument("--if-stale", action="store_true",
                    help="do nothing when every group already has a library built from the current sources")
    args = ap.parse_args(argv)
    if args.if_stale and not os.environ.get("IMCODEC_JIT"):
        from imcodec import jit

        stale = [g for g, v in jit.aot_info().items() if not v.get("library")]
        if not stale:
            print("AOT kernels: up to date")
            return 0
        print(f"AOT kernels: building ({', '.join(stale)} out of date)")
        args.groups = ",".join(stale)
    try:
        summary = build(args.out, args.groups.split(",") if args.groups else None)
    except RuntimeError as exc:
        print(f"imcodec.jit_build: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"AOT kernels: {summary['exports']} variants of {summary['kernels']} kernels -> "
              f"{', '.join(summary['libraries'])} "
              f"(workload {summary['workload_seconds']} s, compile {summary['compile_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
