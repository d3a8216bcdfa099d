"""CloudEvents sink for the KServe InferenceService request logger.

KServe's logger (`spec.predictor.logger: {mode: all, url: http://<this service>}`) POSTs one CloudEvent per
inference request and one per response, in the HTTP *binary* mode: the attributes are `Ce-*` headers
(`Ce-Type: org.kubeflow.serving.inference.request|response`, `Ce-Id` shared by a request and its response,
`Ce-Source`, `Ce-Inferenceservicename`, `Ce-Namespace`, `Ce-Component`, `Ce-Endpoint`, ...) and the body is
the raw request or response, with a Content-Length (cloudevents sdk-go). Structured mode
(`Content-Type: application/cloudevents+json`) is accepted too.

Each event is written as one line of JSON in the CloudEvents JSON format (attributes at the top level, the
payload as `data` when it is JSON or text, else `data_base64`) to stdout, where the cluster's log shipper
picks it up, and optionally appended to a file that is rotated at --file-max-bytes (--file-keep old files).

Limits, so that hostile or broken clients cannot exhaust the pod (each is an option):
- --workers threads serve one request per connection; up to --queue accepted connections wait for them,
  any more are answered 503 with Retry-After at once.
- A connection must deliver its request (headers and body) within --timeout seconds: a slow body gets 408,
  slow headers a closed connection.
- The body needs a Content-Length (411 without one, chunked included; 400 if it is not a number) of at most
  --max-body-bytes (413, answered before any of the body is read, also to `Expect: 100-continue`).
- Events are decoded and written one at a time (the GIL would serialize the decoding anyway), so memory
  stays below about (workers + 30) x max-body-bytes + 40 MiB, the worst case being JSON of empty objects.

Only the Python standard library is used, so the sink runs from a stock `python` image with this file
mounted from a ConfigMap:  python cloudevents_sink.py --port 8080 [--file /data/events.jsonl]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TextIO

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
MIB = 1024 * 1024
# After refusing a request whose body was not read, how long to read and drop what the client still sends,
# so that closing the connection does not reset it before the client has read the answer.
LINGER_SECONDS = 2.0


class NotACloudEvent(ValueError):
    """The HTTP request does not carry a valid CloudEvent."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(body: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); ValueError or RecursionError (deep nesting) when it is not."""
    return json.loads(body, parse_constant=_reject_constant)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json") or media_type == "text/json"


def _payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as CloudEvents JSON-format data: `data` for JSON or text, `data_base64` otherwise."""
    if not body:
        return {}
    if _is_json(content_type):
        with contextlib.suppress(ValueError, RecursionError):
            return {"data": _loads(body)}
    elif content_type.lower().startswith("text/"):
        with contextlib.suppress(UnicodeDecodeError):
            return {"data": body.decode("utf-8")}
    return {"data_base64": base64.b64encode(body).decode("ascii")}


def event_from_http(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Turn one HTTP request (binary or structured mode) into a CloudEvent in the JSON format."""
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == STRUCTURED_CONTENT_TYPE:
        try:
            event = _loads(body)
        except (ValueError, RecursionError) as err:
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


def json_line(event: dict[str, Any], body: bytes) -> str:
    """The event as one JSON line; data nested too deeply to encode is kept as `data_base64` of the body."""
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"
    except RecursionError:
        if "data" not in event:
            raise
        event = {name: value for name, value in event.items() if name != "data"}
        event["data_base64"] = base64.b64encode(body).decode("ascii")
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"


class RotatingFile:
    """Appends to `path`; before it would grow past max_bytes, it becomes path.1 (path.1 becomes path.2,
    ...) and the oldest beyond `keep` is deleted, so the files never hold more than (keep + 1) x max_bytes."""

    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    def append(self, data: bytes) -> bool:
        """Whether `data` was written: not when it alone is larger than max_bytes."""
        if len(data) > self.max_bytes:
            return False
        with contextlib.suppress(FileNotFoundError):
            size = os.stat(self.path).st_size
            if size and size + len(data) > self.max_bytes:
                self._rotate()
        with open(self.path, "ab") as events_file:
            events_file.write(data)
        return True

    def _rotate(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{self.path}.{self.keep}" if self.keep else self.path)
        for number in range(self.keep - 1, -1, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}.{number}" if number else self.path, f"{self.path}.{number + 1}")


class EventWriter:
    """Decodes requests into events and writes them as JSON lines to stdout and, optionally, a file, one at a
    time across the request threads."""

    def __init__(self, stream: TextIO, file: RotatingFile | None = None) -> None:
        self._stream = stream
        self._file = file
        self._lock = threading.Lock()

    def store(self, headers: dict[str, str], body: bytes) -> None:
        """Raises NotACloudEvent for a request that is not one, OSError when the file cannot be written."""
        with self._lock:
            event = event_from_http(headers, body)
            line = json_line(event, body)
            self._stream.write(line)
            self._stream.flush()
            if self._file and not self._file.append(line.encode("utf-8")):
                sys.stderr.write(f"event {event['id']!r} is larger than --file-max-bytes: on stdout only\n")


class DeadlineReader(io.RawIOBase):
    """Socket reads that all end by one deadline: each read may wait only for the time left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received in time")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


def busy_answer() -> bytes:
    text = b"sink busy, retry later\n"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + text


BUSY_ANSWER = busy_answer()


class BoundedHTTPServer(HTTPServer):
    """An HTTP server with a fixed pool of worker threads fed by a bounded queue of accepted connections;
    a connection that finds the queue full is answered 503 by the accepting thread, without waiting."""

    def __init__(self, address: tuple[str, int], handler: type, workers: int, queue_size: int) -> None:
        self.request_queue_size = max(queue_size, 5)  # the listen backlog
        self._connections: queue.Queue = queue.Queue(maxsize=queue_size)
        self._workers: list[threading.Thread] = []
        super().__init__(address, handler)
        self._workers = [threading.Thread(target=self._work, daemon=True) for _worker in range(workers)]
        for worker in self._workers:
            worker.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self._connections.put_nowait((request, client_address))
        except queue.Full:
            request.setblocking(False)
            # Read what already arrived, so that closing does not reset the connection before the answer.
            with contextlib.suppress(OSError):
                request.recv(65536)
            with contextlib.suppress(OSError):
                request.send(BUSY_ANSWER)
            sys.stderr.write(f"{client_address[0]} 503: {self._connections.maxsize} connections queued\n")
            self.shutdown_request(request)

    def _work(self) -> None:
        while (connection := self._connections.get()) is not None:
            request, client_address = connection
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, serve the connections already accepted, then stop the workers."""
        super().server_close()
        for _worker in self._workers:
            self._connections.put(None)
        for worker in self._workers:
            worker.join()


def make_handler(writer: EventWriter, max_body_bytes: int, timeout: float) -> type[BaseHTTPRequestHandler]:
    class CloudEventHandler(BaseHTTPRequestHandler):
        server_version = "kserve-ansible-cloudevents-sink/2"
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.rfile.close()
            self.rfile = io.BufferedReader(DeadlineReader(self.connection, time.monotonic() + timeout))

        def handle(self) -> None:
            # One request per connection: an idle keep-alive connection would hold a worker.
            self.handle_one_request()

        def handle_expect_100(self) -> bool:
            if self._body_length() is None:
                return False
            return super().handle_expect_100()

        def do_POST(self) -> None:
            length = self._body_length()
            if length is None:
                return
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self._reply(HTTPStatus.REQUEST_TIMEOUT, f"request not received within {timeout:g}s\n")
                return
            if len(body) < length:
                self.log_error("connection closed after %d of %d body bytes", len(body), length)
                return
            try:
                writer.store(dict(self.headers.items()), body)
            except NotACloudEvent as err:
                self._reply(HTTPStatus.BAD_REQUEST, f"{err}\n")
                return
            except OSError as err:
                self.log_error("could not write the event: %s", err)
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, "could not store the event\n")
                return
            # KServe's logger treats any status but 200 as a failed delivery.
            self._reply(HTTPStatus.OK, "")

        def do_GET(self) -> None:
            if self.path in ("/healthz", "/readyz"):
                self._reply(HTTPStatus.OK, "ok\n")
            else:
                self._reply(HTTPStatus.NOT_FOUND, "POST CloudEvents to any path; GET /healthz\n")

        def _body_length(self) -> int | None:
            """The request's Content-Length, or None after refusing a request without a valid one."""
            lengths = self.headers.get_all("Content-Length") or []
            digits = lengths[0].strip() if len(lengths) == 1 else ""
            if self.headers.get("Transfer-Encoding") or not lengths:
                refusal = HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required (no chunked encoding)\n"
            elif not (digits.isascii() and digits.isdigit()):
                refusal = HTTPStatus.BAD_REQUEST, f"invalid Content-Length {', '.join(lengths)!r}\n"
            elif len(digits.lstrip("0")) > 18 or int(digits) > max_body_bytes:
                refusal = HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {max_body_bytes} bytes\n"
            else:
                return int(digits)
            self._reply(*refusal)
            self._drop_unread_input()
            return None

        def _reply(self, status: HTTPStatus, text: str) -> None:
            payload = text.encode("utf-8")
            try:
                self.connection.settimeout(timeout)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
            except OSError as err:
                self.log_error("could not answer %d: %s", status, err)

        def _drop_unread_input(self) -> None:
            """Stop sending, then read and drop what the client still sends, for a bounded time."""
            deadline = time.monotonic() + LINGER_SECONDS
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
                while (remaining := deadline - time.monotonic()) > 0:
                    self.connection.settimeout(remaining)
                    if not self.connection.recv(65536):
                        break

        def log_message(self, format: str, *args: Any) -> None:
            # stdout carries only events; access logs go to stderr.
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return CloudEventHandler


def serve(args: argparse.Namespace) -> BoundedHTTPServer:
    """A started-on-demand server; call `serve_forever()` on it (or `shutdown()` from another thread)."""
    file = RotatingFile(args.file, args.file_max_bytes, args.file_keep) if args.file else None
    handler = make_handler(EventWriter(sys.stdout, file), args.max_body_bytes, args.timeout)
    return BoundedHTTPServer((args.host, args.port), handler, args.workers, args.queue)


def positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--host", default="0.0.0.0", help="address to listen on")
    add("--port", type=int, default=8080, help="port to listen on")
    add("--file", default="", help="also append every event as a JSON line to this file")
    add("--file-max-bytes", type=positive(int), default=100 * MIB, help="rotate the file at this size")
    add("--file-keep", type=int, choices=range(100), default=2, metavar="N", help="rotated files kept")
    add("--workers", type=positive(int), default=8, help="requests served at once")
    add("--queue", type=positive(int), default=128, help="connections waiting for a worker, beyond: 503")
    add("--timeout", type=positive(float), default=10.0, help="seconds a connection has to send its request")
    add("--max-body-bytes", type=positive(int), default=4 * MIB, help="largest body accepted, beyond: 413")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = serve(args)
    # SIGTERM (pod deletion) ends the accept loop; the connections already accepted are still served.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stderr.write(f"cloudevents sink listening on {args.host}:{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
