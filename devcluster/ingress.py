"""One local ingress port playing the Istio ingress gateway: routes by Host header to the revision's local
model server, splitting traffic by the InferenceService's percentages (canaryTrafficPercent).

Every proxied answer carries `x-simulator-revision: <revision>` (simulator only, not in real KServe) so a
test can tell which revision served it. Unknown hosts get 404 like Istio; a revision that is not served by
a local process (any image other than our model server) gets 503.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("simulator.ingress")
REVISION_HEADER = "x-simulator-revision"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Ingress:
    def __init__(self, port: int, backend_port):
        """backend_port(namespace, revision) -> local port or None."""
        self.backend_port = backend_port
        self._routes: dict[str, tuple[str, list[tuple[str, int]]]] = {}
        self._by_isvc: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self._random = random.Random()
        handler = type("Handler", (_Handler,), {"ingress": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True

    def serve_forever(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="ingress", daemon=True).start()

    def set_routes(self, namespace: str, isvc: str, routes: dict[str, list[tuple[str, int]]]) -> None:
        with self._lock:
            for host in self._by_isvc.pop((namespace, isvc), []):
                self._routes.pop(host, None)
            for host, split in routes.items():
                self._routes[host] = (namespace, split)
            if routes:
                self._by_isvc[(namespace, isvc)] = list(routes)

    def routes(self) -> dict:
        with self._lock:
            return {host: {"namespace": ns, "split": split} for host, (ns, split) in self._routes.items()}

    def pick(self, host: str) -> tuple[str, str] | None:
        """(namespace, revision) for a request to host, drawn by the traffic split."""
        with self._lock:
            route = self._routes.get(host.split(":", 1)[0].lower())
        if route is None:
            return None
        namespace, split = route
        total = sum(p for _, p in split)
        if total <= 0:
            return None
        draw = self._random.uniform(0, total)
        for revision, percent in split:
            draw -= percent
            if draw <= 0 and percent > 0:
                return namespace, revision
        return namespace, split[-1][0]


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
        target = self.ingress.pick(self.headers.get("host", ""))
        if target is None:
            return self._answer(404, b"")
        namespace, revision = target
        port = self.ingress.backend_port(namespace, revision)
        if port is None:
            message = (
                f"no local process serves revision {revision} (only our model server image runs locally)\n"
            )
            return self._answer(503, message.encode(), {REVISION_HEADER: revision})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as error:
            return self._answer(
                503, f"upstream connect error: {error}\n".encode(), {REVISION_HEADER: revision}
            )
        finally:
            connection.close()
        dropped = HOP_BY_HOP | {"content-length", "server", "date"}  # the gateway sets its own
        out = {k: v for k, v in response.getheaders() if k.lower() not in dropped}
        out[REVISION_HEADER] = revision
        self._answer(response.status, payload, out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle
