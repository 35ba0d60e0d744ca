"""A Dask worker plugin that prepares every worker once for benchmark tasks.

Registered by :func:`imcodec.bench.executors.run_dask`; the scheduler runs ``setup`` on every current
worker and on every worker that joins later (a nanny-restarted one included), so the Numba kernels
are loaded and the codecs imported once per worker process, not per task.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class WarmWorker(WorkerPlugin):
    """Runs :func:`imcodec.bench.tasks.warm_up` for the given (codec, options) pairs and plugins."""

    def __init__(self, warm: tuple, plugins: tuple[str, ...]):
        self.warm = warm
        self.plugins = plugins

    def setup(self, worker) -> None:
        from imcodec.bench.tasks import warm_up

        seconds = warm_up(self.warm, self.plugins)
        worker.log_event("imcodec-bench", {"warm_seconds": seconds})
