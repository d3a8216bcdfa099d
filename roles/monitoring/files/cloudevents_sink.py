"""CloudEvents sink for the KServe InferenceService request logger.

KServe's logger (`spec.predictor.logger: {mode: all, url: http://<this service>}`) POSTs one CloudEvent per
inference request and one per response, in the HTTP *binary* mode: the attributes are `Ce-*` headers
(`Ce-Type: org.kubeflow.serving.inference.request|response`, `Ce-Id` shared by a request and its response,
`Ce-Source`, `Ce-Inferenceservicename`, `Ce-Namespace`, `Ce-Component`, `Ce-Endpoint`, ...) and the body is
the raw request or response. Structured mode (`Content-Type: application/cloudevents+json`) is accepted too.

Each event is written as one line of JSON in the CloudEvents JSON format (attributes at the top level, the
payload as `data` when it is JSON or text, else `data_base64`) to stdout, where the cluster's log shipper
picks it up, and optionally appended to a file.

Only the Python standard library is used, so the sink runs from a stock `python` image with this file
mounted from a ConfigMap:  python cloudevents_sink.py --port 8080 [--file /data/events.jsonl]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
MAX_BODY_BYTES = 64 * 1024 * 1024


class NotACloudEvent(ValueError):
    """The HTTP request does not carry a valid CloudEvent."""


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json") or media_type == "text/json"


def _payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as CloudEvents JSON-format data: `data` for JSON or text, `data_base64` otherwise."""
    if not body:
        return {}
    if _is_json(content_type):
        try:
            return {"data": json.loads(body)}
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
    elif content_type.lower().startswith("text/"):
        try:
            return {"data": body.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {"data_base64": base64.b64encode(body).decode("ascii")}


def event_from_http(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Turn one HTTP request (binary or structured mode) into a CloudEvent in the JSON format."""
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == STRUCTURED_CONTENT_TYPE:
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise NotACloudEvent(f"structured CloudEvent is not valid JSON: {err}") from err
        if not isinstance(event, dict):
            raise NotACloudEvent("structured CloudEvent must be a JSON object")
    else:
        event = {
            name[3:]: urllib.parse.unquote(value)
            for name, value in lowered.items()
            if name.startswith("ce-") and len(name) > 3
        }
        if content_type:
            event["datacontenttype"] = content_type
        event.update(_payload(body, content_type))
    missing = [name for name in REQUIRED_ATTRIBUTES if not event.get(name)]
    if missing:
        raise NotACloudEvent(f"not a CloudEvent: missing attribute(s) {', '.join(missing)}")
    return event


class EventWriter:
    """Writes events as JSON lines to stdout and, optionally, a file; safe across request threads."""

    def __init__(self, stream: TextIO, path: str | None = None) -> None:
        self._stream = stream
        self._path = path
        self._lock = threading.Lock()
        self.count = 0

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()
            if self._path:
                with open(self._path, "a", encoding="utf-8") as events_file:
                    events_file.write(line)
            self.count += 1


def make_handler(writer: EventWriter) -> type[BaseHTTPRequestHandler]:
    class CloudEventHandler(BaseHTTPRequestHandler):
        server_version = "kserve-ansible-cloudevents-sink/1"
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {MAX_BODY_BYTES} bytes")
                return
            body = self.rfile.read(length) if length else b""
            try:
                event = event_from_http(dict(self.headers.items()), body)
            except NotACloudEvent as err:
                self._reply(HTTPStatus.BAD_REQUEST, str(err))
                return
            writer.write(event)
            # KServe's logger treats any status but 200 as a failed delivery.
            self._reply(HTTPStatus.OK, "")

        def do_GET(self) -> None:
            if self.path in ("/healthz", "/readyz"):
                self._reply(HTTPStatus.OK, "ok\n")
            else:
                self._reply(HTTPStatus.NOT_FOUND, "POST CloudEvents to any path; GET /healthz\n")

        def _reply(self, status: HTTPStatus, text: str) -> None:
            payload = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            # stdout carries only events; access logs go to stderr.
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return CloudEventHandler


def serve(host: str, port: int, path: str | None) -> ThreadingHTTPServer:
    """A started-on-demand server; call `serve_forever()` on it (or `shutdown()` from another thread)."""
    server = ThreadingHTTPServer((host, port), make_handler(EventWriter(sys.stdout, path)))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--file", default="", help="also append every event as a JSON line to this file")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.file or None)
    sys.stderr.write(f"cloudevents sink listening on {args.host}:{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
