"""`recsys-spark serve`: load the config's campaigns and answer the service's runtime and event APIs.

Campaigns on ``version: latest`` look for a newer version every ``serve.reload_seconds`` (and at once on
SIGHUP); a newer one is loaded beside the old in a thread and swapped in with one assignment, so every
request is answered whole by one version and none fails during the swap.

>>> server = Server(load_config("configs/synthetic-ecommerce.yaml"))      # doctest: +SKIP
>>> server.run("127.0.0.1", 8080)                                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import signal

from recsys_spark.config import Config
from recsys_spark.core.store import ArrowFiles, VersionStore
from recsys_spark.errors import UserError
from recsys_spark.serving.api import Api
from recsys_spark.serving.app import App
from recsys_spark.serving.auth import load_keys
from recsys_spark.serving.landing import LandingWriter
from recsys_spark.serving.state import Campaign, DatasetGroup

log = logging.getLogger(__name__)


class Server:
    """Everything `serve` runs: the state, the API over it, the ASGI app, the reload loop."""

    def __init__(self, config: Config):
        if not config.campaigns:
            raise UserError(f"{config.source}: no campaigns under `campaigns`; nothing to serve")
        from threadpoolctl import threadpool_limits

        # One BLAS thread: a request's product is small, and more threads only spin against each other.
        self._blas = threadpool_limits(1, "blas")
        self.config = config
        self.store = VersionStore(config.root, ArrowFiles(config.s3))
        self.group = DatasetGroup.load(config)
        campaigns = {c.name: Campaign.load(config, c, self.group, self.store) for c in config.campaigns}
        self.landing = LandingWriter(config.landing, config.serve.publish_seconds)
        self.api = Api(config, self.group, campaigns, self.landing)
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
            self.app.metrics.version.remove(spec.name, current.version.version)
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
        await asyncio.to_thread(self.api.close)
