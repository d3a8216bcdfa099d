"""A small informer: list + watch one resource kind into an in-memory cache, calling back on every change.

Resilient on purpose: a dropped or expired watch re-lists, a kind whose CRD is not installed yet is retried
every few seconds, so the simulator can start before any platform is installed. When the API server cannot
be reached (it or etcd is down or restarting), the informer re-lists and re-watches forever, waiting a bounded
exponential backoff between attempts (0.5 s doubling up to 10 s); it logs the first failure of an outage and
the resume (after how long), not every attempt. The re-list replays every object to `on_change`, so changes
made during the outage are reconciled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("simulator.informer")

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0  # seconds between attempts while the API server cannot be reached
WATCH_SECONDS = 300  # the API server ends each watch after this long; we then re-watch from our version
# No byte from the API server for this long: the connection is dead (a watch ends by WATCH_SECONDS).
READ_TIMEOUT = WATCH_SECONDS + 30

Key = tuple[str, str]  # (namespace or "", name)


def key_of(obj: dict) -> Key:
    meta = obj.get("metadata", {})
    return meta.get("namespace", ""), meta["name"]


class Informer(threading.Thread):
    """Keeps `cache` equal to the API's view of one kind; `on_change(obj, deleted)` runs per event."""

    def __init__(
        self,
        api: client.ApiClient,
        kind: str,
        list_call: Callable,
        on_change: Callable[[dict, bool], None],
        missing_retry: float = 2.0,
        **list_kwargs,
    ):
        super().__init__(name=f"informer-{kind}", daemon=True)
        self.api = api
        self.kind = kind
        self.list_call = list_call
        self.list_kwargs = list_kwargs
        self.on_change = on_change
        self.missing_retry = missing_retry
        self.cache: dict[Key, dict] = {}
        self.synced = threading.Event()
        self._lock = threading.Lock()

    def items(self) -> list[dict]:
        with self._lock:
            return list(self.cache.values())

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            return self.cache.get((namespace, name))

    def remember(self, obj: dict) -> None:
        """Put an object this process just created into the cache, so the next reconcile sees its own write
        even before the watch delivers it (client-go's mutation cache idea); the watch event replaces it."""
        with self._lock:
            self.cache.setdefault(key_of(obj), obj)

    def _to_dict(self, obj) -> dict:
        return obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)

    def run(self) -> None:
        backoff = Backoff(self.kind)
        while True:
            try:
                version = self._relist()
                backoff.succeeded()
                self._watch(version)
            except ApiException as error:
                if error.status == 404:  # the CRD is not installed (yet)
                    backoff.succeeded()
                    self.synced.set()
                    time.sleep(self.missing_retry)
                elif error.status == 410:  # Gone: our resourceVersion expired, re-list at once
                    continue
                else:  # e.g. 503/504 while etcd is down, or 403 while a restarted API server loads RBAC
                    backoff.failed(f"{error.status} {error.reason}")
            except Exception as error:  # a refused or dropped connection: the API server is down/restarting
                backoff.failed(str(error))

    def _relist(self) -> str:
        listing = self._to_dict(self.list_call(**self.list_kwargs, _request_timeout=(10, READ_TIMEOUT)))
        fresh = {key_of(item): item for item in listing.get("items", [])}
        with self._lock:
            gone = [obj for key, obj in self.cache.items() if key not in fresh]
            self.cache = fresh
        self.synced.set()
        for obj in gone:
            self.on_change(obj, True)
        for obj in fresh.values():
            self.on_change(obj, False)
        return listing["metadata"]["resourceVersion"]

    def _watch(self, version: str) -> None:
        stream = watch.Watch().stream(
            self.list_call,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=(10, READ_TIMEOUT),
            **self.list_kwargs,
        )
        for event in stream:
            if event["type"] == "ERROR":
                raw = event.get("raw_object") or {}
                raise ApiException(status=raw.get("code", 500), reason=raw.get("message", "watch error"))
            obj = self._to_dict(event["object"])
            deleted = event["type"] == "DELETED"
            with self._lock:
                if deleted:
                    self.cache.pop(key_of(obj), None)
                else:
                    self.cache[key_of(obj)] = obj
            self.on_change(obj, deleted)


class Backoff:
    """Waits between failed attempts of one informer (bounded exponential backoff) and says, once per outage,
    that the API server is lost and when the informer is back."""

    def __init__(self, kind: str):
        self.kind = kind
        self.delay = BACKOFF_FIRST
        self.failures = 0
        self.since = 0.0

    def failed(self, error: str) -> None:
        if self.failures == 0:
            self.since = time.monotonic()
            log.warning("%s: list/watch failed, retrying until the API server answers: %s", self.kind, error)
        self.failures += 1
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_MAX)

    def succeeded(self) -> None:
        if self.failures:
            log.info(
                "%s: list/watch resumed after %d failed attempts (%.0f s)",
                self.kind,
                self.failures,
                time.monotonic() - self.since,
            )
        self.failures, self.delay = 0, BACKOFF_FIRST
