"""`recsys-spark serve`: load the config's campaigns and answer the service's runtime and event APIs.

Campaigns on ``version: latest`` look for a newer version every ``serve.reload_seconds`` (and at once on
SIGHUP); a newer one is loaded beside the old in a thread and swapped in with one assignment, so every
request is answered whole by one version and none fails during the swap.

With ``serve.workers`` above one, uvicorn's supervisor runs that many worker processes on one listening
socket (a worker that dies is replaced; SIGHUP to the supervisor replaces the workers one at a time, each new
one serving before the old one stops, so campaigns on ``latest`` load their newest version); each worker
reads the events the others accepted from the landing files (:class:`~recsys_spark.serving.landing.
SiblingRecords`).

>>> server = Server(load_config("configs/synthetic-ecommerce.yaml"))      # doctest: +SKIP
>>> server.run("127.0.0.1", 8080)                                          # doctest: +SKIP
>>> serve(load_config("configs/synthetic-ecommerce.yaml"), "127.0.0.1", 8080, workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import tempfile
import time

from recsys_spark.config import Config, load_config
from recsys_spark.core.store import ArrowFiles, VersionStore
from recsys_spark.errors import UserError
from recsys_spark.serving.api import Api
from recsys_spark.serving.app import App
from recsys_spark.serving.auth import load_keys
from recsys_spark.serving.landing import LandingWriter, SiblingRecords
from recsys_spark.serving.state import Campaign, DatasetGroup

log = logging.getLogger(__name__)
WORKER_ENV = "RECSYS_SPARK_SERVE_WORKER"  # what each worker process loads: {"config": path, "started": time}
WORKER_READY_SECONDS = 600  # a replacement worker must load its campaigns within this


def serve(config: Config, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Answer on ``host:port`` until SIGINT / SIGTERM: in this process, or in ``workers`` processes (each
    loads the config again, from ``config.source``)."""
    _require_campaigns(config)  # here too: workers would fail alone, each in its own process
    if workers == 1:
        return Server(config).run(host, port)
    import uvicorn

    metrics = tempfile.mkdtemp(prefix="recsys-serve-metrics-")  # the workers' shared Prometheus values
    # The workers inherit these; they are this process's own only while it supervises.
    settings = {"PROMETHEUS_MULTIPROC_DIR": metrics,
                WORKER_ENV: json.dumps({"config": str(config.source), "started": time.time()})}
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port,
                    log_level="warning", access_log=False, lifespan="on",
                    timeout_worker_healthcheck=WORKER_READY_SECONDS)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(metrics, ignore_errors=True)


def _require_campaigns(config: Config) -> None:
    if not config.campaigns:
        raise UserError(f"{config.source}: no campaigns under `campaigns`; nothing to serve")


def worker_app() -> App:
    """One worker process's application (called by uvicorn's supervisor in each worker)."""
    spec = json.loads(os.environ[WORKER_ENV])
    return Server(load_config(spec["config"]), workers_started=spec["started"]).app


class Server:
    """Everything `serve` runs: the state, the API over it, the ASGI app, the reload loop.
    ``workers_started``: for a worker process, when the server started (it then applies the records its
    sibling workers accepted since)."""

    def __init__(self, config: Config, workers_started: float | None = None):
        _require_campaigns(config)
        from threadpoolctl import threadpool_limits

        # One BLAS thread: a request's product is small, and more threads only spin against each other.
        self._blas = threadpool_limits(1, "blas")
        self.config = config
        self.store = VersionStore(config.root, ArrowFiles(config.s3))
        self.group = DatasetGroup.load(config)
        campaigns = {c.name: Campaign.load(config, c, self.group, self.store) for c in config.campaigns}
        self.landing = LandingWriter(config.landing, config.serve.publish_seconds)
        siblings = None if workers_started is None else \
            SiblingRecords(self.landing.root, self.landing.writer, workers_started)
        self.api = Api(config, self.group, campaigns, self.landing, siblings)
        self.app = App(self.api, load_keys(config.serve.keys_file), config.serve.max_request_bytes)
        self.app.lifespan_hooks = (self._started, self._stopping)
        for name, campaign in campaigns.items():
            self.app.metrics.version.labels(name, campaign.version.version).set(1)
        self._wake: asyncio.Event | None = None
        self._reloader: asyncio.Task | None = None

    def run(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        import uvicorn

        uvicorn.run(self.app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")

    def reload(self) -> list[str]:
        """Load every newer version of the campaigns on ``latest``; the names of those swapped in."""
        swapped = []
        for spec in self.config.campaigns:
            current = self.api.campaigns[spec.name]
            if spec.version != "latest" or self.store.get(spec.solution).version == current.version.version:
                continue
            fresh = Campaign.load(self.config, spec, self.group, self.store)
            self.api.campaigns[spec.name] = fresh  # one assignment: a request sees the old or the new, whole
            self.app.metrics.version.labels(spec.name, current.version.version).set(0)
            self.app.metrics.version.labels(spec.name, fresh.version.version).set(1)
            log.info("campaign %s: version %s loaded (was %s)", spec.name, fresh.version.version,
                     current.version.version)
            swapped.append(spec.name)
        return swapped

    async def _started(self) -> None:
        self._wake = asyncio.Event()
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests) or no SIGHUP
            pass
        self._reloader = asyncio.create_task(self._reload_loop())

    async def _reload_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.serve.reload_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await asyncio.to_thread(self.reload)
            except Exception:  # a half-written or broken version must not stop the server
                log.exception("reloading campaigns failed; still serving the loaded versions")

    async def _stopping(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
        await asyncio.to_thread(self.landing.close)
        if self.api.siblings is not None:
            self.api.siblings.close()
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
