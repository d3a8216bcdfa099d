"""Kind lookups of the manifest set from its worker threads (no cluster: a stand-in discovery client).

The kubernetes dynamic client re-reads every API group on a lookup miss and its cache is not thread-safe:
parallel misses (an uninstall on a cluster without the CRDs) used to fail with KeyError 'resources'."""

import contextlib
import threading
import time

from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_api import Api
from kubernetes.dynamic.exceptions import ResourceNotFoundError


class OneAtATimeDiscovery:
    """Serves ConfigMaps only; fails the test's way if two lookups overlap, like the real cache can."""

    def __init__(self):
        self.lookups = []
        self.busy = threading.Lock()
        self.client = self  # k8s_kinds.Kinds reads client.client (the dynamic client)
        self.resources = self

    def invalidate_cache(self):
        with self._exclusive():
            pass

    def resource(self, kind, api_version):
        with self._exclusive():
            self.lookups.append(kind)
            time.sleep(0.01)
            if kind != "ConfigMap":
                raise ResourceNotFoundError(f"{api_version} {kind}")
            return f"resource {kind}"

    @contextlib.contextmanager
    def _exclusive(self):
        if not self.busy.acquire(blocking=False):
            raise KeyError("resources")
        try:
            yield
        finally:
            self.busy.release()


def objects():
    crs = [
        {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": {"name": n}}
        for n in ("a", "b", "c", "d")
    ]
    configs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}} for n in ("x", "y")]
    return crs + configs


def test_parallel_lookups_of_unserved_kinds_are_serialised_and_asked_once_per_refresh():
    discovery = OneAtATimeDiscovery()
    api = Api(discovery, workers=8)
    items = objects()

    missing = api.kinds.resolve(items)
    found = api.parallel(api.kinds.resource, items)

    assert [obj["metadata"]["name"] for obj in missing] == ["a", "b", "c", "d"]
    assert found == [None] * 4 + ["resource ConfigMap"] * 2
    # one lookup per kind, one more for the unserved kind after the refresh, none from the workers
    assert sorted(discovery.lookups) == ["ClusterServingRuntime", "ClusterServingRuntime", "ConfigMap"]
