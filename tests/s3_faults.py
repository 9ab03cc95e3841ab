"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the S3 server: it forwards every request as it is,
answers some with S3's throttling error (503 SlowDown) instead, and can be stopped (connections refused, as
a server that went away) and started again on the same port.

>>> proxy = FaultProxy(upstream="http://127.0.0.1:5000").start()        # doctest: +SKIP
>>> proxy.throttle_every = 3                                             # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>')
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


class FaultProxy:
    """Forward to ``upstream``; ``throttle_every = n`` answers every n-th request with 503 SlowDown
    (``throttle_every = 1``: all of them); ``stop()`` / ``start()`` take the listening socket away and back."""

    def __init__(self, upstream: str, port: int = 0):
        self.upstream = urlparse(upstream)
        self.port = port
        self.throttle_every = 0
        self.requests = 0
        self.throttled = 0
        self.on_request = None  # called with the request count before each request is handled
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests += 1
                    count = proxy.requests
                    throttle = proxy.throttle_every and count % proxy.throttle_every == 0
                    proxy.throttled += bool(throttle)
                if proxy.on_request is not None:
                    proxy.on_request(count)
                if throttle:
                    self._answer(503, {"Content-Type": "application/xml"},
                                 b"" if self.command == "HEAD" else SLOW_DOWN)
                    return
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                self._answer(answer.status, {k: v for k, v in answer.getheaders()
                                             if k.lower() not in HOP_BY_HOP | {"content-length"}},
                             b"" if self.command == "HEAD" else data, answer.getheader("Content-Length"))

            def _answer(self, status, headers, body, length=None):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if body:
                    self.wfile.write(body)
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused, as by a stopped server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
