"""Where tasks run: a local process pool (default) or a Dask distributed cluster.

Both call ``on_result(task, row)`` / ``on_failure(task, message)`` in the calling process as tasks
finish, so only the caller writes results (workers never touch the results table).

Local pool: :class:`concurrent.futures.ProcessPoolExecutor` on a ``forkserver`` context; each worker
runs :func:`imcodec.bench.tasks.warm_up` once in its initializer (imports, Numba cache loads, one tiny
task per codec) and caps its kernel threads to cpus // workers. A worker that dies (killed, out of
memory) breaks the pool: the finished results are kept, the pool is rebuilt and the unfinished tasks
are submitted again; a task that was running when a worker died ``retries`` times is reported failed.

Dask: :func:`connect` checks the address form first (``tcp://`` or ``tls://HOST:PORT``), then opens one
plain TCP connection (a refused connection or an unknown host fails at once; a server that sends
nothing, or a text banner, within ``scheduler_timeout`` is no Dask scheduler) and only then makes the
Client, under a watchdog (distributed's handshake read has no timeout of its own); a Client that
failed is closed at once and quietly. Every failure is one UsageError line within about the timeout.
The tasks are submitted to the connected :class:`distributed.Client`; a worker plugin
(:mod:`imcodec.bench.dask_plugin`) warms every worker once, including workers the nanny restarts.
The scheduler reschedules the task of a dead worker itself (``distributed.scheduler.allowed-failures``
times, then the task fails with KilledWorker, which is reported as a failure).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
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

_SCHEMES = ("tcp", "tls")
_MAX_GREETING = 1 << 26  # a Dask handshake message is a few hundred bytes; text banners read as ~2^61


def parse_scheduler_address(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``tcp://HOST:PORT`` / ``tls://HOST:PORT`` (IPv6 hosts in brackets);
    UsageError naming the address for anything else, before any connection is tried."""
    from imcodec.errors import UsageError

    expected = "expected an address such as tcp://HOST:8786 or tls://HOST:8786 (IPv6: tcp://[::1]:8786), port 1..65535"
    if not isinstance(address, str) or "://" not in address:
        raise UsageError(f"--scheduler {address!r}: {expected}")
    scheme, rest = address.split("://", 1)
    if scheme not in _SCHEMES:
        raise UsageError(f"--scheduler {address!r}: scheme {scheme + '://'!r} is not supported; {expected}")
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not host or not tail.startswith(":"):
            raise UsageError(f"--scheduler {address!r}: {expected}")
        port_text = tail[1:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host or ":" in host:
            raise UsageError(f"--scheduler {address!r}: {expected}")
    if any(c.isspace() or c in "/?#@[]" for c in host):
        raise UsageError(f"--scheduler {address!r}: bad host {host!r}; {expected}")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"--scheduler {address!r}: bad port {port_text!r}; {expected}")
    return scheme, host, int(port_text)


def _preview(data: bytes) -> str:
    text = data.decode("ascii", "replace")
    text = "".join(c if c.isprintable() and c != "\ufffd" else "." for c in text).strip(". ")
    return text[:40] + ("..." if len(text) > 40 else "")


def _probe(address: str, scheme: str, host: str, port: int, timeout: float) -> None:
    """One plain TCP connection: UsageError at once for a refused connection or an unknown host, and
    (tcp://) after at most ``timeout`` s for a server that is not a Dask scheduler: a Dask server greets
    a new connection at once with a small handshake frame (an 8-byte length first), so
    silence, a closed connection or an implausible length (a text banner) means something else listens.
    """
    import socket
    import struct

    from imcodec.errors import UsageError

    where = f"the Dask scheduler {address} within {timeout:g} s"
    start = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise UsageError(f"cannot reach {where} (connection refused: is the scheduler running?)") from None
    except socket.gaierror as exc:
        raise UsageError(f"cannot reach {where} (unknown host {host!r}: {exc.strerror})") from None
    except (TimeoutError, socket.timeout):
        raise UsageError(f"cannot reach {where} (no answer)") from None
    except OSError as exc:
        raise UsageError(f"cannot reach {where} ({exc.strerror or exc})") from None
    try:
        if scheme != "tcp":  # TLS: the server waits for the client's hello; the Client's own timeout applies
            return
        data = b""
        while len(data) < 8:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise UsageError(f"{address} accepted the connection but sent nothing within {timeout:g} s "
                                 "(a Dask scheduler answers at once): is it a Dask scheduler?")
            sock.settimeout(left)
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError as exc:
                raise UsageError(f"cannot reach {where} ({exc.strerror or exc})") from None
            if not chunk:
                raise UsageError(f"{address} is not a Dask scheduler (it closed the connection without a "
                                 "Dask greeting)")
            data += chunk
        (length,) = struct.unpack("Q", data[:8])  # as distributed.comm.tcp reads it
        if not 0 < length <= _MAX_GREETING:
            sock.settimeout(0.2)
            try:
                data += sock.recv(4096)
            except OSError:
                pass
            raise UsageError(f"{address} is not a Dask scheduler (it sent {_preview(data)!r})")
    finally:
        sock.close()


def _client_class():
    """distributed.Client whose start() records the instance, so that a failed construction can be
    closed here (quickly) instead of by ``Client.__del__`` (which waits twice the timeout and prints
    'Exception ignored in ... TimeoutError')."""
    from distributed import Client

    class BenchClient(Client):
        _made: list = []
        _quiet = False

        def start(self, **kwargs):
            type(self)._made.append(self)
            return super().start(**kwargs)

        def __del__(self):
            if self._quiet:
                return
            with contextlib.suppress(Exception):
                super().__del__()

    return BenchClient


def _discard(client) -> None:
    """Close a client that failed or is no longer wanted without waiting long or printing anything."""
    client._quiet = True
    with contextlib.suppress(BaseException):
        client.close(timeout=2)
    with contextlib.suppress(BaseException):
        client._loop_runner.stop()


def connect(address: str, timeout: float):
    """A :class:`distributed.Client` for ``address`` with at least one worker; UsageError naming the
    address (one line) when the address is malformed, the scheduler cannot be reached, is no Dask
    scheduler or has no worker, all within about ``timeout`` seconds (a refused connection at once)."""
    import threading

    from imcodec.errors import UsageError

    scheme, host, port = parse_scheduler_address(address)
    try:
        import dask
        import distributed  # noqa: F401 - checks that it is installed
    except ImportError:
        raise UsageError("--scheduler needs dask.distributed (pip install 'imcodec[bench]')") from None
    deadline = time.monotonic() + timeout
    _probe(address, scheme, host, port, timeout)

    cls = _client_class()
    outcome: dict[str, Any] = {}

    def make() -> None:
        left = max(0.5, deadline - time.monotonic())
        try:
            # (distributed.comm.timeouts.tcp is a TCP keep-alive time, at least 11 s, that stays with the
            # connections for the whole run and cannot notice a live but silent peer: left as configured)
            with dask.config.set({"distributed.comm.timeouts.connect": f"{left}s"}):
                outcome["client"] = cls(address, timeout=left, set_as_default=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            outcome["error"] = exc

    # a watchdog: distributed's handshake read has no timeout of its own
    worker = threading.Thread(target=make, name="imcodec-dask-connect", daemon=True)
    worker.start()
    worker.join(max(0.5, deadline - time.monotonic()) + 0.25)
    hung = worker.is_alive()
    made = cls._made[:]
    cls._made.clear()
    if hung or "client" not in outcome:
        for c in made:
            _discard(c)
        exc = outcome.get("error")
        if hung or exc is None:
            raise UsageError(f"{address} did not complete the Dask handshake within {timeout:g} s: "
                             "is it a Dask scheduler?")
        if isinstance(exc, MemoryError):
            raise UsageError(f"{address} is not a Dask scheduler (it sent a garbled message)")
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, (OSError, TimeoutError)):
            raise UsageError(f"cannot reach the Dask scheduler {address} within {timeout:g} s ({msg})")
        hint = "is it a Dask scheduler?" if scheme == "tcp" else "is TLS configured (distributed.comm.tls)?"
        raise UsageError(f"cannot connect to the Dask scheduler {address} ({type(exc).__name__}: {msg}): {hint}")
    client = outcome["client"]
    try:
        client.wait_for_workers(1, timeout=max(0.5, deadline - time.monotonic()))
    except BaseException as exc:
        _discard(client)
        if isinstance(exc, (OSError, TimeoutError)):
            raise UsageError(f"the Dask scheduler {address} has no workers (waited {timeout:g} s)") from None
        if isinstance(exc, Exception):
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise UsageError(f"the Dask scheduler {address} failed while waiting for workers "
                             f"({type(exc).__name__}: {msg})") from None
        raise
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
