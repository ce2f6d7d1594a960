"""The collector's HTTP endpoint: ``/metrics`` (Prometheus text) and ``/healthz``.

A small threaded WSGI server of the standard library on its own daemon thread;
``prometheus_client`` renders ``/metrics`` (text format 0.0.4, or OpenMetrics when the
scraper asks, gzip when accepted). ``/healthz`` answers 200 with a JSON body while the
collector's threads are alive and its worker loop turned in the last few seconds, and
503 saying what is wrong otherwise (the writer failed, the receiver died, the worker
is stuck). Anything else is 404. The port is bound at construction, so a port in use is
an error at start.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from collectors.errors import CollectorError

__all__ = ["MetricsServer"]

log = logging.getLogger(__name__)

#: () -> (healthy, details): the collector's own view of its threads.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the collector's exit
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """Serve ``registry`` at ``/metrics`` and ``health`` at ``/healthz`` on ``host:port``."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: HealthCheck
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._health = health
        try:
            self._server = make_server(host, port, self._app, _ThreadingServer, _QuietHandler)
        except OSError as exc:
            raise CollectorError(
                f"--metrics {host}:{port}: cannot listen ({exc.strerror or exc})"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve on a daemon thread until :meth:`close`."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            try:
                healthy, details = self._health()
            except Exception as exc:  # the health check itself failing is unhealthy
                healthy, details = False, {"error": repr(exc)}
            body = json.dumps({"status": "ok" if healthy else "unhealthy", **details}).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        body = b"not found: try /metrics or /healthz\n"
        start_response(
            "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
