"""Delete a manifest set: newest phase first, guarded against deleting CRDs that still have custom resources.

The guard refuses (deleting nothing) while custom resources of the set's CRDs, or of `protect_crds`, exist
that are not part of the install. With `force_absent` those are deleted first, while their controllers still
run; finalizers still holding them after half the timeout are stripped.
"""

import contextlib
import time

from . import manifests as m
from .k8s_waits import wait_gone

with contextlib.suppress(ImportError):  # a missing client library is reported by the module's checks
    from kubernetes.dynamic.exceptions import NotFoundError


def delete(api, objects, force_absent=False, protect_crds=(), owned_annotations=None, wait=True):
    """An ObjectResult per object (`deleted` or `absent`); with `wait`, the deleted objects are gone."""
    ordered = m.deletion_order(objects)
    api.kinds.resolve(ordered)
    live = api.parallel(lambda obj: _live_for_delete(api, obj), ordered)
    present = [obj for obj, found in zip(ordered, live, strict=True) if found]
    own_keys = {m.object_key(obj) for obj in objects}
    crd_names = [obj["metadata"]["name"] for obj in present if obj["kind"] == "CustomResourceDefinition"]
    leftovers = custom_resources_left(api, list(crd_names) + list(protect_crds), own_keys, owned_annotations)
    if leftovers and not force_absent:
        raise m.ManifestError(
            "refusing to delete CRDs that still have custom resources (nothing was deleted): "
            + "; ".join(f"{crd}: {', '.join(names)}" for crd, names in leftovers.items())
            + ". Delete them first (e.g. models role, state absent) or set the role's *_force_absent"
        )
    results = [m.ObjectResult(obj, "absent") for obj, found in zip(ordered, live, strict=True) if not found]
    if leftovers:
        _delete_custom_resources(api, leftovers)
    for phase in reversed(m.apply_phases(present)):
        results.extend(api.parallel(lambda obj: _delete_one(api, obj), list(reversed(phase))))
    if wait and not api.check_mode:
        wait_gone(api, [r.obj for r in results if r.action == "deleted"])
    return results


def _live_for_delete(api, obj):
    resource = api.kinds.resource(obj)
    if resource is None:
        return None
    if m.is_generated_name(obj):
        return api.generated_siblings(resource, obj) or None
    return api.get(resource, obj, metadata_only=not api.want_diff)


def _delete_one(api, obj):
    resource = api.kinds.resource(obj)
    names = (
        [item["metadata"]["name"] for item in api.generated_siblings(resource, obj)]
        if m.is_generated_name(obj)
        else [obj["metadata"]["name"]]
    )
    before = None
    for name in names:
        try:
            before = api.request("delete", api.path(resource, obj, name), propagation_policy="Background")
        except NotFoundError:
            continue
    return m.ObjectResult(obj, "deleted", before=before)


def custom_resources_left(api, crd_names, own_keys, owned_annotations=None):
    """{crd: ["Kind ns/name", ...]} for custom resources that exist and are not part of this install.

    Part of the install: objects of this set (`own_keys`), and objects carrying all `owned_annotations`
    (for example the Helm release annotations of a chart's own resources).
    """
    left = {}
    for name in dict.fromkeys(crd_names):
        crd = api.get_crd(name)
        if crd is None:
            continue
        try:
            listing = api.request("get", m.crd_listing_path(crd), metadata_only="list")
        except NotFoundError:
            continue
        kind = crd["spec"]["names"]["kind"]
        names = []
        for item in listing.get("items") or []:
            metadata = item["metadata"]
            key = (crd["spec"]["group"], kind, metadata.get("namespace") or "", metadata["name"])
            annotations = metadata.get("annotations") or {}
            owned = owned_annotations and all(annotations.get(k) == v for k, v in owned_annotations.items())
            if key not in own_keys and not owned:
                names.append(
                    f"{metadata['namespace']}/{metadata['name']}"
                    if metadata.get("namespace")
                    else metadata["name"]
                )
        if names:
            left[name] = [f"{kind} {n}" for n in names]
    return left


def _delete_custom_resources(api, leftovers):
    """force_absent: delete the users' custom resources first, while their controllers still run."""
    for name in leftovers:
        crd = api.get_crd(name)
        path = m.crd_listing_path(crd)
        api.warn(f"force_absent: deleting {len(leftovers[name])} custom resources of {name}")
        if crd["spec"].get("scope") == "Namespaced":
            listing = api.request("get", path, metadata_only="list")
            for namespace in {item["metadata"]["namespace"] for item in listing.get("items") or []}:
                group_version = path.rsplit("/", 1)[0]
                api.request(
                    "delete", f"{group_version}/namespaces/{namespace}/{crd['spec']['names']['plural']}"
                )
        else:
            api.request("delete", path)
    if not api.check_mode:
        _wait_custom_resources_gone(api, list(leftovers))


def _wait_custom_resources_gone(api, crd_names):
    deadline = time.monotonic() + api.timeout / 2
    while time.monotonic() < deadline:
        if not custom_resources_left(api, crd_names, set()):
            return
        time.sleep(1.0)
    _drop_finalizers(api, crd_names)


def _drop_finalizers(api, crd_names):
    for name in crd_names:
        crd = api.get_crd(name)
        if crd is None:
            continue
        path = m.crd_listing_path(crd)
        listing = api.request("get", path, metadata_only="list")
        for item in listing.get("items") or []:
            metadata = item["metadata"]
            api.warn(
                f"force_absent: removing stuck finalizers {metadata.get('finalizers')} "
                f"of {name} {metadata['name']}"
            )
            base, plural = path.rsplit("/", 1)
            item_path = (
                f"{base}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}"
                if metadata.get("namespace")
                else f"{path}/{metadata['name']}"
            )
            api.request(
                "patch",
                item_path,
                body={"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json",
            )
