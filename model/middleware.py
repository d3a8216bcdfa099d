"""ASGI middleware in front of KServe's REST server: request metrics, request size limits, and work
stopped for clients that have gone.

They sit outside KServe's routes, so they also see the requests KServe refuses before our model runs
(non-JSON bodies, unknown models) and can refuse an oversized body before it is read into memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

import orjson

from model.binary_tensors import binary_request_problem
from model.metrics import REQUEST_DURATION, REQUESTS

INFERENCE_PATH = re.compile(
    r"^/(?P<protocol>v1)/models/(?P<model>[^/:]+):predict$"
    r"|^/(?P<protocol2>v2)/models/(?P<model2>[^/]+)(?:/versions/[^/]+)?/infer$"
)


def inference_route(path: str) -> tuple[str, str] | None:
    """(protocol, model name) of an inference path, or None for other paths."""
    match = INFERENCE_PATH.match(path)
    if match is None:
        return None
    return (match["protocol"] or match["protocol2"], match["model"] or match["model2"])


async def send_error(send: Callable, status: int, message: str, headers: list | None = None) -> None:
    """A JSON error answer shaped like KServe's: ``{"error": message}``."""
    body = orjson.dumps({"error": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestMetricsMiddleware:
    """Counts inference requests by model/protocol/status and times them end to end.

    Model names not served here are counted as ``model="unknown"`` so that random paths cannot
    create unbounded label values. A request whose client went away before any answer is counted with
    code 499 (nginx's "client closed request"); errors inside the app are answered, and counted, as 500.
    """

    def __init__(self, app, served_models: Callable[[], set[str]]):
        self.app = app
        self.served_models = served_models

    async def __call__(self, scope, receive, send):
        route = inference_route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        protocol, model = route
        if model not in self.served_models():
            model = "unknown"
        status = 499
        start = time.perf_counter()

        async def send_and_observe(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            REQUEST_DURATION.labels(model, protocol).observe(time.perf_counter() - start)
            REQUESTS.labels(model, protocol, str(status)).inc()


INTERNAL_ERROR = "internal error in the model server; the server log has the details"


class InternalErrorMiddleware:
    """An error inside the app is answered with a generic 500 and logged with its traceback: the client never
    sees a Python exception (KServe 0.14's own handler answers ``{"error": "TypeError : ..."}``).

    It sits inside the other middleware, so the metrics count these answers as 500."""

    def __init__(self, app, logger):
        self.app = app
        self.logger = logger

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            self.logger.exception("internal error answering %s %s", scope["method"], scope["path"])
            if started:  # too late for an error answer: let the server close the connection
                raise
            await send_error(send, 500, INTERNAL_ERROR)


BINARY_HEADER = b"inference-header-content-length"
REPOSITORY_PATH = re.compile(r"^/v2/repository/models/[^/]+/(load|unload)$")


class RequestGuardMiddleware:
    """Refuses requests KServe would handle badly or should not act on.

    - inference requests with a method other than POST: 405 (KServe says "model does not exist");
    - bodies over ``max_body_bytes``: 413, checked on Content-Length and while reading a chunked body;
    - v2 binary tensor data (``inference-header-content-length``) that KServe could not decode: 400 with
      what is wrong (KServe 0.14 answers malformed binary requests with 500);
    - model repository load/unload: 403; this server serves one model for its whole life, and an
      unauthenticated unload would take it offline until the pod restarts;
    - a client that disconnects before its answer (a timeout, a cancelled call): the request is
      cancelled, so its texts leave the batcher's queue instead of being computed for nobody.
    """

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if REPOSITORY_PATH.match(scope["path"]):
            await send_error(send, 403, "loading and unloading models is disabled on this server")
            return
        route = inference_route(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_error(send, 405, "use POST for inference requests", [(b"allow", b"POST")])
            return
        headers = dict(scope["headers"])
        too_large = f"request body is larger than the limit of {self.max_body_bytes} bytes"
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, 413, too_large)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client disconnected
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await send_error(send, 413, too_large)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        binary_header = headers.get(BINARY_HEADER)
        if route[0] == "v2" and binary_header is not None:
            problem = binary_request_problem(body, binary_header)
            if problem:
                await send_error(send, 400, f"binary tensor request: {problem}")
                return
        await run_until_disconnect(self.app, scope, body, receive, send)


async def run_until_disconnect(app, scope, body: bytes, receive: Callable, send: Callable) -> None:
    """Run ``app`` on an already read ``body``; cancel it if the client disconnects before the answer
    has been sent. Only this function reads ``receive`` from here on; the app sees the disconnect too."""
    gone = asyncio.Event()
    answered = False
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send_and_note(message):
        nonlocal answered
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered = True

    async def watch():
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    handler = asyncio.ensure_future(app(scope, replay, send_and_note))
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not handler.done() and not answered:  # the client left first: stop its work
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
            return
        await handler  # the answer (or its error)
    finally:
        watcher.cancel()
        if not handler.done():  # this request itself is being cancelled (shutdown)
            handler.cancel()
