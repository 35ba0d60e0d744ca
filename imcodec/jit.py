"""Numba kernels that run ahead-of-time compiled when they can.

Every kernel module writes ``from imcodec.jit import njit`` and decorates as with Numba
(``@njit(cache=True, nogil=True)``). The decorator returns a :class:`Kernel`, which is called like
the Numba dispatcher it stands for:

- If the AOT library built for exactly this source tree (``python -m imcodec.jit_build``, run by
  ``make setup``) exports a variant for the argument types of the call, that compiled function
  runs. Importing that library costs about a millisecond; Numba itself is not imported.
- Otherwise Numba is imported and all kernels switch to ordinary ``numba.njit`` dispatchers (with
  their on-disk cache), exactly as without this module.

Why: a one-shot command such as ``imcodec metrics`` spends about 1 s in Numba's start-up (import,
target initialisation, loading cached machine code) before its first kernel runs; the compiled
library removes that fixed cost. The library is keyed by a hash of the kernel sources and the
NumPy/Numba versions, so an edited kernel never runs stale code: it simply falls back to Numba
until the library is rebuilt. ``IMCODEC_JIT=1`` forces Numba everywhere (the test suite uses it
to compare both). Compiled functions hold the GIL while they run (Numba's ``nogil`` applies to
the JIT path only), so :func:`imcodec.metrics.parallel.run_ranges` runs them on one thread.

Inside ``@njit`` code, kernels call each other as usual: when Numba is needed, every
:class:`Kernel` referenced from a loaded module is replaced by its dispatcher before anything
compiles. Test code that defines its own ``numba.njit`` kernels calling imcodec kernels calls
:func:`use_jit` first.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np

ENV_FORCE_JIT = "IMCODEC_JIT"
# One library per group of kernel modules, keyed by the sources the group's kernels can reach
# (its own package plus the packages whose kernels they call), so that editing one package does
# not send the others back to Numba.
GROUPS = {
    "metrics": ("metrics",),
    "octree": ("octree", "entropy"),
    "vpcc": ("vpcc", "entropy"),
    "entropy": ("entropy",),
    "synth": ("synth_kernels.py",),
}

_KERNELS: list["Kernel"] = []
_STATE: dict[str, Any] = {"tables": {}, "jit": False, "info": {}, "nogil": {}}


def group_of(module: str) -> str | None:
    """The library group of a kernel module (``imcodec.octree.raht`` -> ``octree``), or None."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "imcodec":
        name = parts[1]
        for group, members in GROUPS.items():
            if members[0] in (name, f"{name}.py"):
                return group
    return None


class Kernel:
    """A kernel: the AOT-compiled variant for the call's argument types, else the Numba dispatcher."""

    def __init__(self, py_func: Callable, options: dict[str, Any]):
        self.py_func = py_func
        self.options = options
        self.key = f"{py_func.__module__}:{py_func.__qualname__}"
        self.group = group_of(py_func.__module__)
        self._dispatcher = None
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__module__ = py_func.__module__
        self.__doc__ = py_func.__doc__
        self.__wrapped__ = py_func
        _KERNELS.append(self)
        if _STATE["jit"]:  # defined after the switch to Numba: typed through the hook in use_jit
            import numba

            self._dispatcher = numba.njit(**options)(py_func)

    def __call__(self, *args):
        fn = self.aot_variant(args)
        if fn is not None:
            return fn(*args)
        if self.group is not None and any(isinstance(a, np.ndarray) and not a.flags.writeable for a in args):
            # the libraries hold writable-array variants only (see jit_build): run one on copies
            copies = tuple(a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a for a in args)
            fn = self.aot_variant(copies)
            if fn is not None:
                return fn(*copies)
        return self.dispatcher()(*args)

    def aot_variant(self, args: tuple) -> Callable | None:
        """The compiled function for these arguments, or None (then Numba runs the call)."""
        if self.group is None:
            return None
        table = aot_table(self.group)
        if not table:
            return None
        variants = table.get(self.key)
        if not variants:
            return None
        return variants.get(arg_key(args))

    def aot_releases_gil(self) -> bool:
        """Whether this kernel's AOT library releases the GIL while its code runs (see jit_build)."""
        return bool(self.group and _STATE["nogil"].get(self.group))

    def dispatcher(self):
        """The ``numba.njit`` dispatcher of this kernel (imports Numba on first use)."""
        if self._dispatcher is None:
            use_jit()
        return self._dispatcher

    def __getattr__(self, name: str):  # signatures, overloads, ... of the dispatcher
        # private names and tools' probes (pytest looks for ``pytestmark`` on every module global)
        # must not import Numba and switch the whole process to the JIT
        if name.startswith("_") or name.startswith("pytest") or name in ("py_func", "options", "key", "group"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)

    def __repr__(self) -> str:
        return f"<imcodec kernel {self.key}>"


def njit(*args, **options):
    """``@njit``, ``@njit(cache=True, nogil=True, ...)``: a :class:`Kernel` (options go to Numba)."""
    if len(args) == 1 and callable(args[0]) and not options:
        return Kernel(args[0], {})
    if args:
        raise TypeError("imcodec.jit.njit takes keyword options only (no explicit signatures)")
    return lambda func: Kernel(func, options)


def use_jit() -> None:
    """Import Numba and turn every kernel into a ``numba.njit`` dispatcher (idempotent).

    Module globals (in any loaded module) that hold a :class:`Kernel` are replaced by its
    dispatcher, so kernels compiled afterwards call each other through Numba as usual.
    """
    if _STATE["jit"]:
        return
    import numba
    from numba.core.typing.typeof import typeof_impl

    for k in _KERNELS:
        if k._dispatcher is None:
            k._dispatcher = numba.njit(**k.options)(k.py_func)

    @typeof_impl.register(Kernel)
    def _typeof_kernel(val, c):  # a Kernel reached some other way types as its dispatcher
        return typeof_impl(val.dispatcher(), c)

    _STATE["jit"] = True
    _swap_globals()


def _swap_globals() -> None:
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for name, value in list(d.items()):
            if type(value) is Kernel:
                d[name] = value.dispatcher()


# ------------------------------------------------------------------------------------------ AOT

def arg_key(args: tuple) -> tuple | None:
    """The type key of a call's arguments as the AOT manifest spells it; None if one is untyped."""
    out = []
    for v in args:
        k = value_key(v)
        if k is None:
            return None
        out.append(k)
    return tuple(out)


def value_key(v: Any) -> str | None:
    """Numba's type of one argument as a short string (arrays: dtype, ndim, layout, flags)."""
    if isinstance(v, np.ndarray):
        f = v.flags
        layout = "C" if f.c_contiguous else ("F" if f.f_contiguous else "A")
        return f"{v.dtype.str}:{v.ndim}{layout}{'w' if f.writeable else 'r'}{'a' if f.aligned else 'u'}"
    if isinstance(v, (bool, np.bool_)):
        return "?"
    if isinstance(v, int):
        return "<i8" if -(1 << 63) <= v < (1 << 63) else None
    if isinstance(v, float):
        return "<f8"
    if isinstance(v, (np.integer, np.floating)):
        return v.dtype.str
    return None


def source_digest(group: str) -> str:
    """Hash of the group's kernel sources, this module and the NumPy/Numba/Python versions."""
    from imcodec.io.files import digest_files

    root = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(root, "jit.py")]
    for member in GROUPS[group]:
        if member.endswith(".py"):
            paths.append(os.path.join(root, member))
        else:
            folder = os.path.join(root, member)
            paths += sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py"))
    extra = f"{group} numpy {np.__version__} numba {_numba_version()} {sys.version_info[:2]}".encode()
    return digest_files(paths, extra)[:16]


def _numba_version() -> str:
    """Numba's version from its dist-info folder name, without importing it (nor importlib.metadata,
    which alone costs ~40 ms)."""
    import importlib.util

    spec = importlib.util.find_spec("numba")
    if spec is None or not spec.origin:
        return "none"
    site = os.path.dirname(os.path.dirname(spec.origin))
    found = sorted(n[6:-10] for n in os.listdir(site) if n.startswith("numba-") and n.endswith(".dist-info"))
    return found[-1] if found else "unknown"


def aot_dirs() -> list[str]:
    """Where AOT libraries are looked for: $IMCODEC_AOT_DIR, the package's ``_aot``, the user cache."""
    out = []
    env = os.environ.get("IMCODEC_AOT_DIR")
    if env:
        out.append(env)
    out.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_aot"))
    out.append(os.path.join(os.path.expanduser("~"), ".cache", "imcodec", "aot"))
    return out


def library_name(group: str, digest: str) -> str:
    return f"imcodec_kernels_{group}_{digest}"


def aot_table(group: str) -> dict | None:
    """kernel key -> {argument key -> compiled function} of the group's matching library, or None."""
    tables = _STATE["tables"]
    if group in tables:
        return tables[group]
    tables[group] = None
    if os.environ.get(ENV_FORCE_JIT, "") not in ("", "0"):
        _STATE["info"][group] = {"library": None, "reason": f"{ENV_FORCE_JIT} is set"}
        return None
    from imcodec.io.files import load_extension

    digest = source_digest(group)
    name = library_name(group, digest)
    for folder in aot_dirs():
        found = load_extension(folder, name)
        if found is None:
            continue
        module, manifest = found
        table: dict[str, dict] = {}
        for export, (kernel, key) in manifest["exports"].items():
            fn = getattr(module, export, None)
            if fn is not None:
                table.setdefault(kernel, {})[tuple(key)] = fn
        tables[group] = table
        _STATE["nogil"][group] = bool(manifest.get("releases_gil"))
        _STATE["info"][group] = {"library": os.path.join(folder, name), "digest": digest,
                                 "releases_gil": _STATE["nogil"][group],
                                 "variants": sum(len(v) for v in table.values()), "kernels": len(table)}
        return table
    _STATE["info"][group] = {"library": None, "digest": digest, "reason": "no library built for these sources"}
    return None


def aot_info() -> dict:
    """Per group, which AOT library is in use (``library`` None when none matches the sources)."""
    for group in GROUPS:
        aot_table(group)
    return {g: dict(v) for g, v in _STATE["info"].items()}
