"""Where tasks run: a local process pool (default) or a Dask distributed cluster.

Both call ``on_result(task, row)`` / ``on_failure(task, message)`` in the calling process as tasks
finish, so only the caller writes results (workers never touch the results table).

Local pool: :class:`concurrent.futures.ProcessPoolExecutor` on a ``forkserver`` context; each worker
runs :func:`imcodec.bench.tasks.warm_up` once in its initializer (imports, Numba cache loads, one tiny
task per codec) and caps its kernel threads to cpus // workers. A worker that dies (killed, out of
memory) breaks the pool: the finished results are kept, the pool is rebuilt and the unfinished tasks
are submitted again; a task that was running when a worker died ``retries`` times is reported failed.

Dask: the tasks are submitted to the connected :class:`distributed.Client`; a worker plugin
(:mod:`imcodec.bench.dask_plugin`) warms every worker once, including workers the nanny restarts.
The scheduler reschedules the task of a dead worker itself (``distributed.scheduler.allowed-failures``
times, then the task fails with KilledWorker, which is reported as a failure).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from imcodec.bench.tasks import Task, run_task, warm_up

OnResult = Callable[[Task, dict], None]
OnFailure = Callable[[Task, str], None]

_STARTED = None  # per worker process: a SimpleQueue receiving the ids of started tasks


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(warm: tuple, plugins: tuple[str, ...], threads: int, started) -> None:
    global _STARTED
    _STARTED = started
    warm_up(warm, plugins, threads=threads)


def _execute(task: Task) -> dict[str, Any]:
    if _STARTED is not None:
        _STARTED.put(task.task_id)  # synchronous pipe write: seen even if the worker dies next
    return run_task(task)


def _describe(exc: BaseException) -> str:
    from imcodec.errors import ImcodecError

    if isinstance(exc, ImcodecError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_local(tasks: list[Task], workers: int, warm: tuple, plugins: tuple[str, ...], retries: int,
              on_result: OnResult, on_failure: OnFailure) -> dict[str, Any]:
    """Run ``tasks`` on ``workers`` local processes; returns {"pool_restarts": n}."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
    started = ctx.SimpleQueue()
    threads = max(1, cpu_count() // workers)
    pending = {t.task_id: t for t in tasks}
    attempts: Counter[str] = Counter()
    restarts = 0
    while pending:
        broken = False
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx,
                                   initializer=_init_worker, initargs=(warm, plugins, threads, started))
        try:
            futures = {pool.submit(_execute, t): tid for tid, t in pending.items()}
            todo = set(futures)
            while todo:
                done, todo = wait(todo, return_when=FIRST_COMPLETED)
                for fut in done:
                    tid = futures[fut]
                    exc = fut.exception()
                    if exc is None:
                        on_result(pending.pop(tid), fut.result())
                    elif isinstance(exc, BrokenProcessPool):
                        broken = True
                    else:
                        on_failure(pending.pop(tid), _describe(exc))
        except BaseException:  # Ctrl-C or a failing callback: stop the workers now, not after their tasks
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            continue
        restarts += 1
        seen = set()
        while not started.empty():
            seen.add(started.get())
        suspects = [tid for tid in seen if tid in pending]
        for tid in suspects:
            attempts[tid] += 1
            if attempts[tid] >= retries:
                on_failure(pending.pop(tid), f"a worker died while running it {attempts[tid]} times")
        if not suspects:  # a worker died outside any task (e.g. in its warm-up): do not loop forever
            attempts["__pool__"] += 1
            if attempts["__pool__"] >= retries:
                for tid in list(pending):
                    on_failure(pending.pop(tid), "the worker pool broke repeatedly before running it")
    return {"pool_restarts": restarts}


# ------------------------------------------------------------------------------------------- Dask

def connect(address: str, timeout: float):
    """A :class:`distributed.Client` for ``address`` with at least one worker; UsageError naming the
    address when the scheduler cannot be reached or has no worker within ``timeout`` seconds."""
    from imcodec.errors import UsageError

    if not address.startswith(("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")):
        raise UsageError(f"--scheduler {address!r}: expected an address such as tcp://HOST:8786")
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs dask.distributed (pip install 'imcodec[bench]')") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise UsageError(f"cannot reach the Dask scheduler {address} within {timeout:g} s ({msg})") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise UsageError(f"the Dask scheduler {address} has no workers (waited {timeout:g} s)") from None
    return client


def run_dask(client, tasks: list[Task], warm: tuple, plugins: tuple[str, ...], on_result: OnResult,
             on_failure: OnFailure) -> dict[str, Any]:
    """Run ``tasks`` on the cluster behind ``client``; returns {"workers": n at the start}."""
    from distributed import as_completed

    from imcodec.bench.dask_plugin import WarmWorker

    client.register_plugin(WarmWorker(warm, plugins), name="imcodec-bench-warm")
    workers = len(client.scheduler_info().get("workers", {}))
    token = uuid.uuid4().hex[:8]
    by_key = {f"imcodec-bench-{t.task_id}-{token}": t for t in tasks}
    futures = client.map(run_task, list(by_key.values()), key=list(by_key), pure=False)
    for fut in as_completed(futures, loop=client.loop):
        task = by_key[fut.key]
        if fut.status == "finished":
            on_result(task, fut.result())
        else:
            exc = fut.exception()
            on_failure(task, _describe(exc) if exc is not None else f"task {fut.status}")
        fut.release()
    return {"workers": workers}
