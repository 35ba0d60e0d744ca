"""Run a GIL-releasing Numba kernel over index ranges on a few threads.

The metric kernels are ``@njit(cache=True, nogil=True)`` functions taking ``lo, hi`` as their last
arguments and writing into preallocated outputs; this avoids Numba's ``parallel=True`` machinery,
whose start-up cost dominates for one-shot command-line runs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

CHUNK = 65536  # fixed chunking: results do not depend on the thread count


def thread_count() -> int:
    """Threads to use: NUMBA_NUM_THREADS when set, else the CPUs this process may run on (max 16)."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


def run_ranges(kernel, n: int, *args, threads: int | None = None) -> list:
    """Call ``kernel(*args, lo, hi)`` over chunks of CHUNK indices covering range(n).

    Returns the kernel results in chunk order (one chunk when n <= CHUNK). A kernel served by an
    ahead-of-time library that keeps the GIL (see :mod:`imcodec.jit`) runs on this thread only.
    """
    threads = thread_count() if threads is None else threads
    bounds = [(lo, min(n, lo + CHUNK)) for lo in range(0, n, CHUNK)] or [(0, 0)]
    compiled = kernel.aot_variant(args + (0, 0)) if hasattr(kernel, "aot_variant") else None
    if compiled is not None and not kernel.aot_releases_gil():  # threads would only contend for the GIL
        return [compiled(*args, lo, hi) for lo, hi in bounds]
    if threads <= 1 or len(bounds) == 1:
        return [kernel(*args, lo, hi) for lo, hi in bounds]
    with ThreadPoolExecutor(max_workers=min(threads, len(bounds))) as pool:
        futures = [pool.submit(kernel, *args, lo, hi) for lo, hi in bounds]
        return [f.result() for f in futures]
