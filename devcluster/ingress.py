"""One local ingress port playing Istio's ingress and local gateways: routes by Host header through the
Istio stand-in's table (istio_standin.py: the KIngresses the real Knative controller writes, the
VirtualServices KServe writes) to a ready endpoint of the destination Service, a pod IP:port.

A proxied answer carries `x-simulator-revision: <revision>` (simulator only, not in real KServe) so a test
can tell which revision served it: the `Knative-Serving-Revision` header that Knative's KIngress split added
to the request. Unknown hosts get 404 like Istio; no ready endpoint gets 503 `no healthy upstream`.
`/.simulator/ready` answers 200 once the simulator serves; `/.simulator/routes` shows the table as JSON.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devcluster import istio_standin as istio

log = logging.getLogger("simulator.ingress")
REVISION_HEADER = "x-simulator-revision"
UPSTREAM_TIMEOUT = 300  # seconds for one proxied request (Istio's routes have none by default)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Ingress:
    def __init__(
        self,
        port: int,
        cluster_view: Callable[[], istio.ClusterView] = istio.ClusterView,
        address: str = "127.0.0.1",
    ):
        """cluster_view() -> the Services and EndpointSlices now (the Istio stand-in's routes)."""
        self.cluster_view = cluster_view
        self.istio_table = istio.RoutingTable()
        self._random = random.Random()
        handler = type("Handler", (_Handler,), {"ingress": self})
        self.server = ThreadingHTTPServer((address, port), handler)
        self.server.daemon_threads = True

    def serve_forever(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="ingress", daemon=True).start()

    def set_istio_table(self, table: istio.RoutingTable) -> None:
        self.istio_table = table  # one reference swap: requests in flight keep the table they started with

    def routes(self) -> dict:
        return {"istio": self.istio_table.describe()}

    def dispatch(self, path: str, headers: dict[str, str]) -> istio.Forward | istio.Reject:
        return istio.dispatch(self.istio_table, self.cluster_view(), path, headers, self._random)


class _Handler(BaseHTTPRequestHandler):
    ingress: Ingress
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "istio-envoy"

    def log_message(self, format, *args):
        log.debug(format, *args)

    def _answer(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/.simulator/ready":
            return self._answer(200, b"ok\n")
        if self.path == "/.simulator/routes":
            return self._answer(
                200, json.dumps(self.ingress.routes()).encode(), {"content-type": "application/json"}
            )
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        plan = self.ingress.dispatch(self.path, headers)
        if isinstance(plan, istio.Forward):
            return self._forward(plan, body)
        return self._answer(plan.status, plan.body, {"content-type": "text/plain"} if plan.body else None)

    def _forward(self, plan: istio.Forward, body: bytes) -> None:
        """Proxy to a pod's address as the gateway's Envoy would (no retries)."""
        headers = {
            **plan.headers,
            "x-forwarded-proto": "http",
            "x-forwarded-for": self.client_address[0],
            "x-request-id": plan.headers.get("x-request-id") or str(uuid.uuid4()),
        }
        revision = plan.headers.get("knative-serving-revision", "")
        tag = {REVISION_HEADER: revision} if revision else {}
        started = time.monotonic()
        try:
            status, payload, answer = _proxy(plan.address, plan.port, self.command, plan.path, headers, body)
        except TimeoutError:
            return self._answer(504, b"upstream request timeout", {"content-type": "text/plain", **tag})
        except OSError as error:
            log.info("upstream %s:%d for %s: %s", plan.address, plan.port, headers.get("host"), error)
            return self._answer(
                503,
                f"upstream connect error or disconnect/reset before headers. reset reason: {error}".encode(),
                tag,
            )
        answer["x-envoy-upstream-service-time"] = str(int((time.monotonic() - started) * 1000))
        self._answer(status, payload, {**answer, **tag})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle


def _proxy(address: str, port: int, method: str, path: str, headers: dict, body: bytes):
    """One request upstream: (status, body, headers to pass back)."""
    connection = http.client.HTTPConnection(address, port, timeout=UPSTREAM_TIMEOUT)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    dropped = HOP_BY_HOP | {"content-length", "server", "date"}  # the gateway sets its own
    return response.status, payload, {k: v for k, v in response.getheaders() if k.lower() not in dropped}
