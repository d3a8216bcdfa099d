"""Which API resource serves each kind of a manifest set: discovery lookups, serialised and remembered.

`client` is kubernetes.core's K8SClient (its `client` is the kubernetes dynamic client).
"""

import contextlib
import threading

with contextlib.suppress(ImportError):  # a missing client library is reported by the module's checks
    from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError


class Kinds:
    """The kind -> API resource lookups of one run, shared by its worker threads."""

    def __init__(self, client):
        self.client = client
        self._resources = {}
        self._lock = threading.Lock()

    def resource(self, obj, refresh=False):
        """The API resource serving obj's kind, or None when the cluster does not serve it (yet).

        Answers, "not served" included, are remembered until `refresh`: the discovery client re-reads
        every API group on each miss, and doing that from several worker threads at once breaks its
        cache (KeyError 'resources'), so lookups are also serialised."""
        key = (obj["apiVersion"], obj["kind"])
        with self._lock:
            if key in self._resources and not refresh:
                return self._resources[key]
            try:
                found = self.client.resource(obj["kind"], obj["apiVersion"])
            except (ResourceNotFoundError, ResourceNotUniqueError):
                found = None
            self._resources[key] = found
            return found

    def resolve(self, objects):
        """The objects whose kind the cluster does not serve; discovery is refreshed once for new CRDs."""
        missing = [obj for obj in objects if self.resource(obj) is None]
        if missing:
            with self._lock:
                self.client.client.resources.invalidate_cache()
            kinds = {(obj["apiVersion"], obj["kind"]): obj for obj in missing}
            unserved = {key for key, obj in kinds.items() if self.resource(obj, refresh=True) is None}
            missing = [obj for obj in missing if (obj["apiVersion"], obj["kind"]) in unserved]
        return missing
