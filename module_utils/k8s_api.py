"""One run of a manifest set against one cluster: raw API calls, kind lookups, worker threads, warnings.

Built on kubernetes.core's API client (`get_api_client`: auth, discovery cache). The units that use it:
`k8s_apply.py` (phased server-side apply), `k8s_waits.py` (CRDs Established, Deployments rolled out,
objects gone) and `k8s_delete.py` (uninstall with the custom-resource guard).
"""

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor

from .k8s_kinds import Kinds

with contextlib.suppress(ImportError):  # a missing client library is reported by the module's checks
    from kubernetes.dynamic.exceptions import NotFoundError

METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_ONLY_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
CRD_KIND = ("CustomResourceDefinition", "apiextensions.k8s.io/v1")


def reason(exc):
    """The API server's message for an error, not the client library's wrapper text."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (TypeError, ValueError):
            return str(body)
    return str(exc)


class Api:
    """`client` is kubernetes.core's K8SClient. In `check_mode` every write is a server-side dry run;
    `want_diff` reads whole objects where metadata would do, for the diff. `kinds` maps the objects'
    kinds to their API resources (see k8s_kinds.py)."""

    def __init__(self, client, check_mode=False, want_diff=False, workers=8, timeout=300, warn=None):
        self.client = client
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.workers = workers
        self.timeout = timeout
        self.kinds = Kinds(client)
        self.warnings = []
        self._warn = warn

    def warn(self, message):
        self.warnings.append(message)
        if self._warn:
            self._warn(message)

    def parallel(self, function, items):
        """function(item) for each item, on up to `workers` threads; the answers in the items' order."""
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(function, items))

    def request(self, method, path, body=None, metadata_only=False, **params):
        """One API call; `metadata_only` asks for metadata alone ("list" for a collection)."""
        if metadata_only:
            params["header_params"] = {
                "Accept": METADATA_ONLY_LIST if metadata_only == "list" else METADATA_ONLY
            }
        if self.check_mode and method != "get":
            params["dry_run"] = "All"
        response = self.client.client.request(method, path, body=body, serialize=False, **params)
        data = response.data
        return json.loads(data) if data else None

    def builtin(self, kind, api_version):
        """The API resource of a built-in kind (CustomResourceDefinition, Pod)."""
        return self.client.resource(kind, api_version)

    @staticmethod
    def namespace(resource, obj):
        return (obj["metadata"].get("namespace") or "default") if resource.namespaced else None

    def path(self, resource, obj, name=None):
        name = name if name is not None else obj["metadata"].get("name")
        return resource.path(name=name, namespace=self.namespace(resource, obj))

    def get(self, resource, obj, metadata_only=True):
        """The live object (by default its metadata only), or None."""
        try:
            return self.request("get", self.path(resource, obj), metadata_only=metadata_only)
        except NotFoundError:
            return None

    def get_crd(self, name):
        """The live CustomResourceDefinition `name`, or None."""
        return self.get(self.builtin(*CRD_KIND), {"metadata": {"name": name}}, metadata_only=False)

    def generated_siblings(self, resource, obj):
        """Objects created earlier from obj's generateName template (same prefix and labels)."""
        metadata = obj["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in sorted((metadata.get("labels") or {}).items()))
        listing = self.request(
            "get",
            resource.path(namespace=self.namespace(resource, obj)),
            label_selector=selector or None,
            metadata_only="list",
        )
        prefix = metadata["generateName"]
        return [item for item in listing.get("items") or [] if item["metadata"]["name"].startswith(prefix)]
