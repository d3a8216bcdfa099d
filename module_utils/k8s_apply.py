"""Apply a manifest set: phased server-side apply, create-once for generateName objects, check-mode diff.

Each object is server-side applied (field manager `kserve-ansible`) with one PATCH; objects of one phase go
out in parallel, phases in order (see `manifests.apply_phases`), and the CRDs of the first phase are
Established before the next. "changed" is what the API server says: an object changed when its
resourceVersion moved (a no-op server-side apply does not write), or, in check mode, when the server-side
dry-run answer differs from the live object.
"""

import contextlib
import time

from . import manifests as m
from . import webhooks
from .k8s_api import reason
from .k8s_waits import (
    wait_established,
    wait_rolled_out,
)

with contextlib.suppress(ImportError):  # a missing client library is reported by the module's checks
    from kubernetes.dynamic.exceptions import ConflictError, DynamicApiError, NotFoundError


# The API server's words for an applied object with a field its CRD's schema does not declare.
SCHEMA_LAGS = "field not declared in schema"


class Applier:
    """Applies objects through `api` (k8s_api.Api) as `field_manager`."""

    def __init__(self, api, field_manager="kserve-ansible", force_conflicts=False):
        self.api = api
        self.field_manager = field_manager
        self.force_conflicts = force_conflicts

    def apply(self, objects, wait=True):
        """An ObjectResult per object; with `wait`, the Deployments have rolled out on return."""
        api = self.api
        results = []
        for index, phase in enumerate(m.apply_phases(objects)):
            if not phase:
                continue
            unserved = {id(obj) for obj in api.kinds.resolve(phase)}
            if unserved and not api.check_mode:
                obj = next(o for o in phase if id(o) in unserved)
                raise m.ManifestError(
                    f"the cluster does not serve {obj['kind']} ({obj['apiVersion']}), needed by "
                    f"{m.describe(obj)}: install the component that defines it first"
                )
            phase_results = api.parallel(
                lambda obj, unserved=unserved: self._apply_one(obj, served=id(obj) not in unserved), phase
            )
            results.extend(phase_results)
            if index == 0 and not api.check_mode:
                wait_established(
                    api, [r.obj for r in phase_results if r.obj["kind"] == "CustomResourceDefinition"]
                )
        if wait and not api.check_mode:
            wait_rolled_out(api, [obj for obj in objects if obj["kind"] == "Deployment"])
        return results

    def _apply_one(self, obj, served=True):
        api = self.api
        if not served:
            return m.ObjectResult(
                obj, "created", after=obj, note="its kind is not served yet (CRD not installed)"
            )
        resource = api.kinds.resource(obj)
        if m.is_generated_name(obj):
            return self._create_once(resource, obj)
        before = api.get(resource, obj, metadata_only=not (api.check_mode or api.want_diff))
        try:
            after = self._server_side_apply(resource, obj)
        except NotFoundError as exc:
            if api.check_mode:  # its namespace is created by this same set
                return m.ObjectResult(obj, "created", after=obj, note=reason(exc))
            raise
        except m.ManifestError as exc:
            if not (api.check_mode and SCHEMA_LAGS in str(exc)):
                raise
            # A dry run checks the object against the CRD in the cluster, which a real run would have
            # replaced before (an earlier phase or part): a release that adds a field to a CRD (KServe
            # 0.15's ClusterServingRuntime workerSpec) cannot be dry-run before its CRD is applied.
            api.warn(
                f"{m.describe(obj)}: not dry-run, the cluster's CRD does not declare a field of it yet "
                f"({reason(exc)}); a real run applies the newer CRD first"
            )
            action = "created" if before is None else "updated"
            return m.ObjectResult(
                obj, action, before=before, after=obj, note="its CRD in the cluster is older"
            )
        except ConflictError as exc:
            api.warn(
                f"{m.describe(obj)}: left as is, another field manager owns fields we set "
                f"({reason(exc)}); set force_conflicts to take them over"
            )
            return m.ObjectResult(obj, "conflict", before=before, note=reason(exc))
        if before is None:
            action = "created"
            if not api.check_mode and not after["metadata"].get("managedFields"):
                # An object applied with no field of its own (a bare Secret) is stored without managedFields;
                # the API server then writes a "before-first-apply" entry on the next apply. Take that write
                # now, so that a second run changes nothing.
                after = self._server_side_apply(resource, obj)
        elif api.check_mode:
            action = "updated" if m.would_change(before, after) else "unchanged"
        else:
            moved = before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion")
            action = "updated" if moved else "unchanged"
        return m.ObjectResult(obj, action, before=before, after=after)

    def _server_side_apply(self, resource, obj):
        """One PATCH; retried (bounded by the API's webhook_timeout) while an admission webhook does not
        serve yet (see webhooks.py). A webhook's rejection, or any other error, fails at once."""
        started = time.monotonic()
        delay, attempts, first_problem = 1.0, 0, ""
        while True:
            try:
                answer = self.api.request(
                    "patch",
                    self.api.path(resource, obj),
                    body=obj,
                    content_type="application/apply-patch+yaml",
                    field_manager=self.field_manager,
                    force_conflicts=self.force_conflicts,
                )
            except DynamicApiError as exc:
                message = reason(exc)
                waited = time.monotonic() - started
                if not webhooks.not_ready(message):
                    if isinstance(exc, (NotFoundError, ConflictError)):
                        raise
                    raise m.ManifestError(f"{m.describe(obj)}: server-side apply failed: {message}") from exc
                if self.api.webhook_timeout <= 0:
                    raise m.ManifestError(
                        f"{m.describe(obj)}: {webhooks.explain(message)} (no retry: webhook_timeout 0): "
                        f"{message}"
                    ) from exc
                if waited + delay > self.api.webhook_timeout:
                    raise m.ManifestError(
                        f"{m.describe(obj)}: gave up after {attempts + 1} attempts over {waited:.0f} s "
                        f"({webhooks.explain(message)}): {message}"
                    ) from exc
                attempts += 1
                first_problem = first_problem or webhooks.explain(message)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if attempts:
                retries = "1 retry" if attempts == 1 else f"{attempts} retries"
                self.api.warn(
                    f"{m.describe(obj)}: applied after {retries} over "
                    f"{time.monotonic() - started:.0f} s ({first_problem})"
                )
            return answer

    def _create_once(self, resource, obj):
        """A generateName object is created once: a later run finds its sibling and leaves it."""
        api = self.api
        if api.generated_siblings(resource, obj):
            return m.ObjectResult(obj, "unchanged", note="created by an earlier run")
        try:
            after = api.request(
                "post",
                resource.path(namespace=api.namespace(resource, obj)),
                body=obj,
                field_manager=self.field_manager,
            )
        except NotFoundError as exc:
            if api.check_mode:
                return m.ObjectResult(obj, "created", after=obj, note=reason(exc))
            raise
        return m.ObjectResult(obj, "created", after=after)
