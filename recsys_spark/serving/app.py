"""The HTTP side of the real-time server: a plain ASGI application run by uvicorn.

Routes are the service models' own request URIs (``POST /recommendations``, ``/personalize-ranking``,
``/events``, ``/users``, ``/items``), plus ``GET /ping`` (health: the campaigns and their versions) and
``GET /metrics`` (Prometheus). Errors are answered as the service answers them (status, ``x-amzn-ErrorType``
header, ``{"message": ...}`` body), which the SDK raises as typed exceptions. Event operations answer only
once their records are fsynced to the landing folder, and then apply them in memory.

Why plain ASGI and not a framework: on this 2-core machine a minimal JSON endpoint served 7,650 requests/s
under uvicorn as a plain ASGI callable, 5,140 with aiohttp and 2,850 with Starlette (wrk, 16 connections,
5 s; ``scripts/bench_serve.py --stacks``); routing six fixed paths needs no framework. JSON through
orjson: a 25-item answer is encoded in 1.6 us against the standard library's 35 us (5% of a request's CPU).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from recsys_spark.serving.api import ROUTES, Api, ServiceError, validate
from recsys_spark.serving.auth import AuthError, check_signature

log = logging.getLogger(__name__)
JSON = [(b"content-type", b"application/x-amz-json-1.1")]
#: Every answer names the process that gave it (one of several with ``serve.workers``).
WORKER = b"x-recsys-worker"


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (several servers may share a process). With
    worker processes (``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor) each worker's values go to shared
    files and ``/metrics`` answers for all of them: counters and the histogram summed, the version gauge per
    live worker (``pid`` label)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "Requests answered", ["operation", "status"],
                                registry=self.registry)
        self.latency = Histogram("recsys_request_seconds", "Time to answer a request", ["operation"],
                                 buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5),
                                 registry=self.registry)
        self.events = Counter("recsys_records_appended", "Records written to the landing folder", ["operation"],
                              registry=self.registry)
        self.version = Gauge("recsys_campaign_version", "1 for the version each campaign serves",
                             ["campaign", "version"], registry=self.registry, multiprocess_mode="liveall")

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


class App:
    """The ASGI callable. ``keys``: SigV4 key pairs (empty: loopback clients only, unsigned)."""

    def __init__(self, api: Api, keys: dict[str, str], max_request_bytes: int, metrics: Metrics | None = None):
        self.api, self.keys, self.max_request_bytes = api, keys, max_request_bytes
        self.metrics = metrics or Metrics()
        self.lifespan_hooks: tuple = (None, None)
        self.worker = str(os.getpid()).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        operation = "-"
        try:
            if method == "GET" and path in ("/ping", "/metrics"):
                operation = path[1:]
                return await self._get(path, send)
            if (method, path) not in ROUTES:
                raise ServiceError("UnknownOperationException", f"no operation at {method} {path}", 404)
            service, operation = ROUTES[(method, path)]
            body = await self._body(scope, receive)
            self._authorize(scope, body)
            try:
                request = orjson.loads(body or b"{}")
            except ValueError as e:
                raise ServiceError("SerializationException", f"the body is not JSON: {e}") from None
            if not isinstance(request, dict):
                raise ServiceError("SerializationException", "the body must be a JSON object")
            validate(service, operation, request)
            answer = self.api.call(operation, request)
            if isinstance(answer, asyncio.Future):  # a recommendation, scored in a block with others
                answer = await answer
            elif isinstance(answer, tuple):  # an event operation: durable first, then visible
                answer, written, apply = answer
                await asyncio.wrap_future(written)
                apply()
                self.metrics.events.labels(operation).inc(len(request.get("eventList") or request.get("users")
                                                              or request.get("items") or []))
            payload = orjson.dumps(answer)  # an answer that cannot be encoded is a 500, counted once
            # Counted before the answer leaves: a client that has its answer finds it in /metrics.
            self.metrics.requests.labels(operation, "200").inc()
            await self._respond(send, 200, payload)
        except ServiceError as e:
            self.metrics.requests.labels(operation, str(e.status)).inc()
            await self._respond(send, e.status, orjson.dumps({"message": e.message}),
                           [(b"x-amzn-errortype", e.code.encode())])
        except Exception:
            log.exception("%s %s failed", method, path)
            self.metrics.requests.labels(operation, "500").inc()
            await self._respond(send, 500, b'{"message": "internal error"}',
                                [(b"x-amzn-errortype", b"InternalFailure")])
        finally:
            self.metrics.latency.labels(operation).observe(time.perf_counter() - started)

    async def _body(self, scope, receive) -> bytes:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > self.max_request_bytes:
            raise ServiceError("InvalidInputException", f"the request is larger than {self.max_request_bytes} "
                                                        "bytes (serve.max_request_bytes)", 413)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                raise ServiceError("InvalidInputException", f"the request is larger than {self.max_request_bytes} "
                                                            "bytes (serve.max_request_bytes)", 413)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _authorize(self, scope, body: bytes) -> None:
        if not self.keys:
            host = (scope.get("client") or ("", 0))[0]
            if not _loopback(host):
                raise ServiceError("AccessDeniedException", "this server has no keys configured and answers "
                                                            "loopback clients only", 403)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            check_signature(self.keys, scope["method"], scope["path"], scope.get("query_string", b"").decode(),
                            headers, body)
        except AuthError as e:
            raise ServiceError(e.code, str(e), 403) from None

    async def _get(self, path: str, send) -> None:
        if path == "/metrics":
            return await self._respond(send, 200, self.metrics.exposition(),
                                  [(b"content-type", b"text/plain; version=0.0.4")])
        campaigns = {name: c.version.version for name, c in self.api.campaigns.items()}
        await self._respond(send, 200, orjson.dumps({"status": "ok", "campaigns": campaigns,
                                                     "worker": os.getpid()}))

    async def _respond(self, send, status: int, body: bytes, headers: list | None = None) -> None:
        headers = headers or []
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, *([] if headers and headers[0][0] == b"content-type" else JSON),
                                (b"content-length", str(len(body)).encode()), (WORKER, self.worker)]})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive, send) -> None:
        startup, shutdown = self.lifespan_hooks
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if startup:
                    await startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if shutdown:
                    await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
