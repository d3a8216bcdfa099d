"""Waits of a manifest set: CRDs Established, Deployments rolled out (with why their pods are not ready),
deleted objects gone. Each polls the API server until done or `api.timeout` passes, then fails with what
is still pending and why."""

import time

from . import manifests as m
from .k8s_api import CRD_KIND


def poll(api, pending, is_done, describe_pending, what, interval):
    """Poll `is_done(obj)` for each pending object until all are done or the timeout passes."""
    deadline = time.monotonic() + api.timeout
    while pending:
        states = api.parallel(is_done, pending)
        pending = [obj for obj, done in zip(pending, states, strict=True) if not done]
        if not pending:
            return
        if time.monotonic() > deadline:
            details = "; ".join(describe_pending(obj) for obj in pending)
            raise m.ManifestError(f"timed out after {api.timeout}s waiting for {what}: {details}")
        time.sleep(interval)


def wait_established(api, crds):
    resource = api.builtin(*CRD_KIND)

    def established(crd):
        live = api.get(resource, crd, metadata_only=False)
        return live is not None and m.crd_established(live)

    poll(api, list(crds), established, m.describe, "CRDs to be Established", 0.2)


def wait_rolled_out(api, deployments):
    last_seen = {}

    def rolled_out(deployment):
        live = api.get(api.kinds.resource(deployment), deployment, metadata_only=False)
        last_seen[id(deployment)] = live
        return live is not None and m.deployment_progress(live)[0]

    def explain(deployment):
        live = last_seen.get(id(deployment))
        if live is None:
            return f"{m.describe(deployment)}: not found"
        return f"{m.describe(deployment)}: {m.deployment_progress(live)[1]}{pod_hint(api, live)}"

    poll(api, list(deployments), rolled_out, explain, "Deployments to roll out", 1.0)


def pod_hint(api, deployment):
    """Why its pods are not ready, in the scheduler's or kubelet's words (e.g. Insufficient cpu)."""
    selector = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
    pods = api.builtin("Pod", "v1")
    listing = api.request(
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


def wait_gone(api, objects):
    def gone(obj):
        resource = api.kinds.resource(obj)
        if m.is_generated_name(obj):
            return not api.generated_siblings(resource, obj)
        return api.get(resource, obj) is None

    poll(api, list(objects), gone, m.describe, "deleted objects to disappear", 0.5)
