"""Follow one Kubernetes object through the watch API, surviving what long watches meet in practice.

`ObjectWatch.next_change(until)` blocks until the object changes (or `until` passes) and returns the new
object. Underneath it keeps the resourceVersion of the last event it saw, so that

- a watch the API server ends (its `timeoutSeconds` window) is reopened where it stopped;
- a dropped or stalled connection (reset, proxy restart, read timeout) is reopened where it stopped;
- an expired resourceVersion (410 Gone, the server's history was compacted) triggers a fresh GET: the
  caller gets the current object, so no change can be missed;
- BOOKMARK events only advance the resourceVersion.

Counters in `stats` say how often each happened (the wait module returns them).

`CollectionWatch` follows every object of a kind in one namespace (optionally those matching a label
selector) through one watch: the same recovery, with `list_objects()` instead of `get()` and a relist
that returns all the objects.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

try:
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError
    from kubernetes.watch.watch import iter_resp_lines
    from urllib3.exceptions import HTTPError
except ImportError:  # reported by AnsibleK8SModule's dependency check
    DynamicApiError = NotFoundError = HTTPError = Exception

HTTP_GONE = 410
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT_SLACK = 15.0


class WatchError(Exception):
    """The API server refused the watch for a reason retrying cannot fix (e.g. Forbidden)."""


@dataclass
class Change:
    type: str  # ADDED, MODIFIED, DELETED, or RELISTED (fresh GET after 410 Gone)
    object: dict | None
    objects: list | None = None  # a CollectionWatch's RELISTED: every object, as the fresh list has them


class ObjectWatch:
    def __init__(self, client, resource, name: str, namespace: str | None, clock=time.monotonic):
        """client: kubernetes.core's K8SClient; resource: its dynamic Resource for the object's kind."""
        self.dynamic = client.client
        self.resource = resource
        self.name = name
        self.namespace = namespace
        self.clock = clock
        self.resource_version: str | None = None
        self.stats = {"events": 0, "windows": 0, "reconnects": 0, "relists": 0}
        self.last_error = ""
        self._response = None
        self._lines = None
        self._window_end = 0.0

    # ------------------------------------------------------------------ reads

    def get(self) -> dict | None:
        """Current object (None if absent); its resourceVersion becomes the watch's starting point."""
        try:
            obj = self.resource.get(name=self.name, namespace=self.namespace).to_dict()
        except NotFoundError:
            return None
        self.resource_version = obj["metadata"]["resourceVersion"]
        return obj

    def next_change(self, until: float) -> Change | None:
        """The next change of the object, or None when `until` (a clock() time) passes first."""
        while self.clock() < until:
            if self._lines is None or self._window_end > until + 1.0:  # none open, or it would outlive until
                self.close()
                change = self._open(until)
                if change:
                    return change
            try:
                change = self._read()
            except (HTTPError, OSError, ValueError) as exc:  # dropped/stalled connection, partial line
                self.close()
                self.stats["reconnects"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(max(0.0, min(0.2, until - self.clock())))
                continue
            if change is not None:
                return change
            self.close()  # window ended server-side: reopen from the last resourceVersion
            self.stats["windows"] += 1
        return None

    def close(self) -> None:
        if self._response is not None:
            try:
                self._response.close()
                self._response.release_conn()
            except (HTTPError, OSError):
                pass
        self._response = None
        self._lines = None

    # ------------------------------------------------------------------ internals

    def _open(self, until: float) -> Change | None:
        window = max(1, math.ceil(until - self.clock()))
        try:
            self._response = self.dynamic.request(
                "get",
                self.resource.path(namespace=self.namespace),
                watch=True,
                **self._selectors(),
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=window,
                serialize=False,
                _request_timeout=(CONNECT_TIMEOUT, window + READ_TIMEOUT_SLACK),
            )
        except DynamicApiError as exc:
            if exc.status == HTTP_GONE:
                return self._relist()
            raise WatchError(f"watch on {self._describe()} refused: {exc.status} {exc.reason}") from exc
        self._window_end = self.clock() + window
        self._lines = iter_resp_lines(self._response)
        return None

    def _read(self) -> Change | None:
        """Read events until one is a change of the object; None when the server ends the window."""
        for line in self._lines:
            if not line:
                continue
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == HTTP_GONE:
                    self.close()
                    return self._relist()
                raise WatchError(f"watch on {self._describe()} failed: {obj.get('message', obj)}")
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = version
            if kind == "BOOKMARK":
                continue
            self.stats["events"] += 1
            return Change(kind, obj)
        return None

    def _relist(self) -> Change:
        self.stats["relists"] += 1
        obj = self.get()
        return Change("RELISTED" if obj else "DELETED", obj)

    def _selectors(self) -> dict:
        return {"field_selector": f"metadata.name={self.name}"}

    def _describe(self) -> str:
        return f"{self.resource.kind} {self.namespace}/{self.name}"


class CollectionWatch(ObjectWatch):
    """Every object of `resource` in `namespace` (matching `label_selector`), through one watch."""

    def __init__(self, client, resource, namespace: str, label_selector: str = "", clock=time.monotonic):
        super().__init__(client, resource, "", namespace, clock=clock)
        self.label_selector = label_selector

    def get(self) -> dict | None:
        raise TypeError("a CollectionWatch lists: use list_objects()")

    def list_objects(self) -> list[dict]:
        """The current objects; the list's resourceVersion becomes the watch's starting point."""
        listing = self.resource.get(namespace=self.namespace, label_selector=self.label_selector or None)
        listing = listing.to_dict()
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        return listing.get("items") or []

    def _relist(self) -> Change:
        self.stats["relists"] += 1
        return Change("RELISTED", None, objects=self.list_objects())

    def _selectors(self) -> dict:
        return {"label_selector": self.label_selector} if self.label_selector else {}

    def _describe(self) -> str:
        selected = f" ({self.label_selector})" if self.label_selector else ""
        return f"{self.resource.kind}s in {self.namespace}{selected}"
