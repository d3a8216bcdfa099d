"""Apply or delete a set of manifest objects on a cluster, and wait until it is usable.

Built on kubernetes.core's API client (`get_api_client`: auth, discovery cache). Each object is
server-side applied (field manager `kserve-ansible`) with one PATCH; objects of one phase go out in parallel,
phases in order (see `manifests.apply_phases`). "changed" is what the API server says: an object changed when
its resourceVersion moved (a no-op server-side apply does not write), or, in check mode, when the server-side
dry-run answer differs from the live object.
"""

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests as m

with contextlib.suppress(ImportError):  # a missing client library is reported by the module's checks
    from kubernetes.dynamic.exceptions import (
        ConflictError,
        DynamicApiError,
        NotFoundError,
        ResourceNotFoundError,
        ResourceNotUniqueError,
    )

METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_ONLY_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
WEBHOOK_NOT_READY = ("failed calling webhook", "no endpoints available for service", "connection refused")


def _reason(exc):
    """The API server's message for an error, not the client library's wrapper text."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (TypeError, ValueError):
            return str(body)
    return str(exc)


class _DiffDumper(yaml.SafeDumper):
    """YAML for diffs: multi-line strings (JSON in ConfigMaps) as blocks, so their lines diff one by one."""


def _represent_text(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_DiffDumper.add_representer(str, _represent_text)


class ObjectResult:
    """What happened to one object: `created`, `updated`, `unchanged`, `deleted`, `absent` or `conflict`."""

    def __init__(self, obj, action, before=None, after=None, note=""):
        self.obj, self.action, self.before, self.after, self.note = obj, action, before, after, note

    @property
    def changed(self):
        return self.action in ("created", "updated", "deleted")

    def as_dict(self):
        metadata = self.obj["metadata"]
        entry = {
            "kind": self.obj["kind"],
            "apiVersion": self.obj["apiVersion"],
            "name": metadata.get("name") or metadata.get("generateName"),
            "action": self.action,
        }
        if metadata.get("namespace"):
            entry["namespace"] = metadata["namespace"]
        if self.note:
            entry["note"] = self.note
        return entry

    def diff(self):
        def render(obj):
            return yaml.dump(m.comparable(obj), Dumper=_DiffDumper, sort_keys=True) if obj is not None else ""

        return {
            "before_header": m.describe(self.obj),
            "after_header": m.describe(self.obj),
            "before": render(self.before),
            "after": render(self.after if self.action != "deleted" else None),
        }


class ManifestSet:
    """One run against one cluster. `client` is kubernetes.core's K8SClient."""

    def __init__(
        self,
        client,
        field_manager="kserve-ansible",
        force_conflicts=False,
        check_mode=False,
        want_diff=False,
        workers=8,
        timeout=300,
        warn=None,
    ):
        self.client = client
        self.dynamic = client.client
        self.field_manager = field_manager
        self.force_conflicts = force_conflicts
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.workers = workers
        self.timeout = timeout
        self.warnings = []
        self._warn = warn
        self._resources = {}
        self._discovery_lock = threading.Lock()

    # --- plumbing ---

    def warn(self, message):
        self.warnings.append(message)
        if self._warn:
            self._warn(message)

    def _parallel(self, function, items):
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(function, items))

    def _request(self, method, path, body=None, metadata_only=False, **params):
        """One API call; `metadata_only` asks for metadata alone ("list" for a collection)."""
        if metadata_only:
            params["header_params"] = {
                "Accept": METADATA_ONLY_LIST if metadata_only == "list" else METADATA_ONLY
            }
        if self.check_mode and method != "get":
            params["dry_run"] = "All"
        response = self.dynamic.request(method, path, body=body, serialize=False, **params)
        data = response.data
        return json.loads(data) if data else None

    def resource(self, obj, refresh=False):
        """The API resource serving obj's kind, or None when the cluster does not serve it (yet).

        Answers, "not served" included, are remembered until `refresh`: the discovery client re-reads
        every API group on each miss, and doing that from several worker threads at once breaks its
        cache (KeyError 'resources'), so lookups are also serialised."""
        key = (obj["apiVersion"], obj["kind"])
        with self._discovery_lock:
            if key in self._resources and not refresh:
                return self._resources[key]
            try:
                found = self.client.resource(obj["kind"], obj["apiVersion"])
            except (ResourceNotFoundError, ResourceNotUniqueError):
                found = None
            self._resources[key] = found
            return found

    def _path(self, resource, obj, name=None):
        metadata = obj["metadata"]
        namespace = (metadata.get("namespace") or "default") if resource.namespaced else None
        return resource.path(name=name if name is not None else metadata.get("name"), namespace=namespace)

    def get(self, resource, obj, metadata_only=True):
        try:
            return self._request("get", self._path(resource, obj), metadata_only=metadata_only)
        except NotFoundError:
            return None

    def _resolve(self, objects):
        """Map each object's kind to its API resource, refreshing discovery once for new CRDs."""
        missing = [obj for obj in objects if self.resource(obj) is None]
        if missing:
            with self._discovery_lock:
                self.dynamic.resources.invalidate_cache()
            kinds = {(obj["apiVersion"], obj["kind"]): obj for obj in missing}
            unserved = {key for key, obj in kinds.items() if self.resource(obj, refresh=True) is None}
            missing = [obj for obj in missing if (obj["apiVersion"], obj["kind"]) in unserved]
        return missing

    # --- apply ---

    def apply(self, objects, wait=True):
        results = []
        for index, phase in enumerate(m.apply_phases(objects)):
            if not phase:
                continue
            unserved = {id(obj) for obj in self._resolve(phase)}
            if unserved and not self.check_mode:
                obj = next(o for o in phase if id(o) in unserved)
                raise m.ManifestError(
                    f"the cluster does not serve {obj['kind']} ({obj['apiVersion']}), needed by "
                    f"{m.describe(obj)}: install the component that defines it first"
                )
            phase_results = self._parallel(
                lambda obj, unserved=unserved: self._apply_one(obj, served=id(obj) not in unserved), phase
            )
            results.extend(phase_results)
            if index == 0 and not self.check_mode:
                self.wait_established(
                    [r.obj for r in phase_results if r.obj["kind"] == "CustomResourceDefinition"]
                )
        if wait and not self.check_mode:
            self.wait_rolled_out([obj for obj in objects if obj["kind"] == "Deployment"])
        return results

    def _apply_one(self, obj, served=True):
        if not served:
            return ObjectResult(
                obj, "created", after=obj, note="its kind is not served yet (CRD not installed)"
            )
        resource = self.resource(obj)
        if m.is_generated_name(obj):
            return self._create_once(resource, obj)
        before = self.get(resource, obj, metadata_only=not (self.check_mode or self.want_diff))
        try:
            after = self._server_side_apply(resource, obj)
        except NotFoundError as exc:
            if self.check_mode:  # its namespace is created by this same set
                return ObjectResult(obj, "created", after=obj, note=_reason(exc))
            raise
        except ConflictError as exc:
            self.warn(
                f"{m.describe(obj)}: left as is, another field manager owns fields we set "
                f"({_reason(exc)}); set force_conflicts to take them over"
            )
            return ObjectResult(obj, "conflict", before=before, note=_reason(exc))
        if before is None:
            action = "created"
            if not self.check_mode and not after["metadata"].get("managedFields"):
                # An object applied with no field of its own (a bare Secret) is stored without managedFields;
                # the API server then writes a "before-first-apply" entry on the next apply. Take that write
                # now, so that a second run changes nothing.
                after = self._server_side_apply(resource, obj)
        elif self.check_mode:
            action = "updated" if m.would_change(before, after) else "unchanged"
        else:
            moved = before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion")
            action = "updated" if moved else "unchanged"
        return ObjectResult(obj, action, before=before, after=after)

    def _server_side_apply(self, resource, obj):
        """One PATCH; retried while an admission webhook of the platform is not serving yet."""
        deadline = time.monotonic() + self.timeout
        delay = 1.0
        while True:
            try:
                return self._request(
                    "patch",
                    self._path(resource, obj),
                    body=obj,
                    content_type="application/apply-patch+yaml",
                    field_manager=self.field_manager,
                    force_conflicts=self.force_conflicts,
                )
            except DynamicApiError as exc:
                message = _reason(exc)
                if not any(text in message for text in WEBHOOK_NOT_READY) or time.monotonic() > deadline:
                    if isinstance(exc, (NotFoundError, ConflictError)):
                        raise
                    raise m.ManifestError(f"{m.describe(obj)}: server-side apply failed: {message}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _generated_siblings(self, resource, obj):
        """Objects created earlier from the same generateName template (same prefix and labels)."""
        metadata = obj["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in sorted((metadata.get("labels") or {}).items()))
        namespace = (metadata.get("namespace") or "default") if resource.namespaced else None
        listing = self._request(
            "get", resource.path(namespace=namespace), label_selector=selector or None, metadata_only="list"
        )
        prefix = metadata["generateName"]
        return [item for item in listing.get("items") or [] if item["metadata"]["name"].startswith(prefix)]

    def _create_once(self, resource, obj):
        if self._generated_siblings(resource, obj):
            return ObjectResult(obj, "unchanged", note="created by an earlier run")
        namespace = (obj["metadata"].get("namespace") or "default") if resource.namespaced else None
        try:
            after = self._request(
                "post", resource.path(namespace=namespace), body=obj, field_manager=self.field_manager
            )
        except NotFoundError as exc:
            if self.check_mode:
                return ObjectResult(obj, "created", after=obj, note=_reason(exc))
            raise
        return ObjectResult(obj, "created", after=after)

    # --- waits ---

    def _poll(self, pending, is_done, describe_pending, what, interval):
        """Poll `is_done(obj)` for each pending object until all are done or the timeout passes."""
        deadline = time.monotonic() + self.timeout
        while pending:
            states = self._parallel(is_done, pending)
            pending = [obj for obj, done in zip(pending, states, strict=True) if not done]
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "; ".join(describe_pending(obj) for obj in pending)
                raise m.ManifestError(f"timed out after {self.timeout}s waiting for {what}: {details}")
            time.sleep(interval)

    def wait_established(self, crds):
        resource = self.client.resource("CustomResourceDefinition", "apiextensions.k8s.io/v1")

        def established(crd):
            live = self.get(resource, crd, metadata_only=False)
            return live is not None and m.crd_established(live)

        self._poll(list(crds), established, m.describe, "CRDs to be Established", 0.2)

    def wait_rolled_out(self, deployments):
        last_seen = {}

        def rolled_out(deployment):
            live = self.get(self.resource(deployment), deployment, metadata_only=False)
            last_seen[id(deployment)] = live
            return live is not None and m.deployment_progress(live)[0]

        def explain(deployment):
            live = last_seen.get(id(deployment))
            if live is None:
                return f"{m.describe(deployment)}: not found"
            return f"{m.describe(deployment)}: {m.deployment_progress(live)[1]}{self._pod_hint(live)}"

        self._poll(list(deployments), rolled_out, explain, "Deployments to roll out", 1.0)

    def _pod_hint(self, deployment):
        """Why its pods are not ready, in the scheduler's or kubelet's words (e.g. Insufficient cpu)."""
        selector = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
        pods = self.client.resource("Pod", "v1")
        listing = self._request(
            "get",
            pods.path(namespace=deployment["metadata"]["namespace"]),
            label_selector=",".join(f"{k}={v}" for k, v in selector.items()),
        )
        for pod in listing.get("items") or []:
            status = pod.get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("status") == "False" and condition.get("message"):
                    return f" (pod {pod['metadata']['name']}: {condition['message']})"
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting")
                if waiting:
                    reason = f"{waiting.get('reason')} {waiting.get('message', '')}".strip()
                    return f" (pod {pod['metadata']['name']}: {reason})"
        return "" if listing.get("items") else " (no pods)"

    # --- delete ---

    def delete(self, objects, force_absent=False, protect_crds=(), owned_annotations=None, wait=True):
        ordered = m.deletion_order(objects)
        self._resolve(ordered)
        live = self._parallel(self._live_for_delete, ordered)
        present = [(obj, found) for obj, found in zip(ordered, live, strict=True) if found]
        own_keys = {m.object_key(obj) for obj in objects}
        crd_names = [
            obj["metadata"]["name"] for obj, _ in present if obj["kind"] == "CustomResourceDefinition"
        ]
        leftovers = self.custom_resources_left(
            list(crd_names) + list(protect_crds), own_keys, owned_annotations
        )
        if leftovers and not force_absent:
            raise m.ManifestError(
                "refusing to delete CRDs that still have custom resources (nothing was deleted): "
                + "; ".join(f"{crd}: {', '.join(names)}" for crd, names in leftovers.items())
                + ". Delete them first (e.g. models role, state absent) or set the role's *_force_absent"
            )
        results = [ObjectResult(obj, "absent") for obj, found in zip(ordered, live, strict=True) if not found]
        if leftovers:
            self._delete_custom_resources(leftovers)
        for phase in reversed(m.apply_phases([obj for obj, _ in present])):
            results.extend(self._parallel(self._delete_one, list(reversed(phase))))
        if wait and not self.check_mode:
            self.wait_gone([r.obj for r in results if r.action == "deleted"])
        return results

    def _live_for_delete(self, obj):
        resource = self.resource(obj)
        if resource is None:
            return None
        if m.is_generated_name(obj):
            return self._generated_siblings(resource, obj) or None
        return self.get(resource, obj, metadata_only=not self.want_diff)

    def _delete_one(self, obj):
        resource = self.resource(obj)
        names = (
            [item["metadata"]["name"] for item in self._generated_siblings(resource, obj)]
            if m.is_generated_name(obj)
            else [obj["metadata"]["name"]]
        )
        before = None
        for name in names:
            try:
                before = self._request(
                    "delete", self._path(resource, obj, name), propagation_policy="Background"
                )
            except NotFoundError:
                continue
        return ObjectResult(obj, "deleted", before=before)

    def _crd_listing_path(self, crd):
        spec = crd["spec"]
        served = [v["name"] for v in spec.get("versions") or [] if v.get("served", True)]
        version = next(
            (v["name"] for v in spec["versions"] if v.get("storage")), served[0] if served else None
        )
        return f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"

    def custom_resources_left(self, crd_names, own_keys, owned_annotations=None):
        """{crd: ["Kind ns/name", ...]} for custom resources that exist and are not part of this install.

        Part of the install: objects of this set (`own_keys`), and objects carrying all `owned_annotations`
        (for example the Helm release annotations of a chart's own resources).
        """
        crd_resource = self.client.resource("CustomResourceDefinition", "apiextensions.k8s.io/v1")
        left = {}
        for name in dict.fromkeys(crd_names):
            crd = self.get(crd_resource, {"metadata": {"name": name}}, metadata_only=False)
            if crd is None:
                continue
            try:
                listing = self._request("get", self._crd_listing_path(crd), metadata_only="list")
            except NotFoundError:
                continue
            kind = crd["spec"]["names"]["kind"]
            names = []
            for item in listing.get("items") or []:
                metadata = item["metadata"]
                key = (crd["spec"]["group"], kind, metadata.get("namespace") or "", metadata["name"])
                annotations = metadata.get("annotations") or {}
                owned = owned_annotations and all(
                    annotations.get(k) == v for k, v in owned_annotations.items()
                )
                if key not in own_keys and not owned:
                    names.append(
                        f"{metadata['namespace']}/{metadata['name']}"
                        if metadata.get("namespace")
                        else metadata["name"]
                    )
            if names:
                left[name] = [f"{kind} {n}" for n in names]
        return left

    def _delete_custom_resources(self, leftovers):
        """force_absent: delete the users' custom resources first, while their controllers still run."""
        crd_resource = self.client.resource("CustomResourceDefinition", "apiextensions.k8s.io/v1")
        for name in leftovers:
            crd = self.get(crd_resource, {"metadata": {"name": name}}, metadata_only=False)
            path = self._crd_listing_path(crd)
            self.warn(f"force_absent: deleting {len(leftovers[name])} custom resources of {name}")
            if crd["spec"].get("scope") == "Namespaced":
                listing = self._request("get", path, metadata_only="list")
                for namespace in {item["metadata"]["namespace"] for item in listing.get("items") or []}:
                    group_version = path.rsplit("/", 1)[0]
                    self._request(
                        "delete", f"{group_version}/namespaces/{namespace}/{crd['spec']['names']['plural']}"
                    )
            else:
                self._request("delete", path)
        if not self.check_mode:
            self._wait_custom_resources_gone(list(leftovers))

    def _wait_custom_resources_gone(self, crd_names):
        deadline = time.monotonic() + self.timeout / 2
        while time.monotonic() < deadline:
            if not self.custom_resources_left(crd_names, set()):
                return
            time.sleep(1.0)
        self._drop_finalizers(crd_names)

    def _drop_finalizers(self, crd_names):
        crd_resource = self.client.resource("CustomResourceDefinition", "apiextensions.k8s.io/v1")
        for name in crd_names:
            crd = self.get(crd_resource, {"metadata": {"name": name}}, metadata_only=False)
            if crd is None:
                continue
            path = self._crd_listing_path(crd)
            listing = self._request("get", path, metadata_only="list")
            for item in listing.get("items") or []:
                metadata = item["metadata"]
                self.warn(
                    f"force_absent: removing stuck finalizers {metadata.get('finalizers')} "
                    f"of {name} {metadata['name']}"
                )
                base, plural = path.rsplit("/", 1)
                item_path = (
                    f"{base}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}"
                    if metadata.get("namespace")
                    else f"{path}/{metadata['name']}"
                )
                self._request(
                    "patch",
                    item_path,
                    body={"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json",
                )

    def wait_gone(self, objects):
        def gone(obj):
            resource = self.resource(obj)
            if m.is_generated_name(obj):
                return not self._generated_siblings(resource, obj)
            return self.get(resource, obj) is None

        self._poll(list(objects), gone, m.describe, "deleted objects to disappear", 0.5)
