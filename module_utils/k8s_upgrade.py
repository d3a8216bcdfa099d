"""Read what a KServe upgrade preview needs from the cluster (the decisions: `upgrade_plan.py`).

Read-only: the running controller's Deployment, the ClusterServingRuntimes, inferenceservice-config, every
InferenceService, each component's workload (Knative Service, else Deployment) and its pods.
"""

from __future__ import annotations

from .upgrade_plan import COMPONENTS, CONFIG_MAP, CONTROLLER, ISVC_POD_LABEL

try:
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
except ImportError:  # reported by AnsibleK8SModule's dependency check
    NotFoundError = ResourceNotFoundError = Exception


def _items(client, kind, api_version, **query):
    try:
        resource = client.resource(kind, api_version)
    except ResourceNotFoundError:
        return []  # the API server does not serve the kind (KServe or Knative not installed)
    return resource.get(**query).to_dict().get("items") or []


def _one(client, kind, api_version, namespace, name):
    try:
        return client.resource(kind, api_version).get(namespace=namespace, name=name).to_dict()
    except (NotFoundError, ResourceNotFoundError):
        return None


def read_state(client):
    """Everything `upgrade_plan.plan` reads, plus the controller Deployment (its version)."""
    isvcs = _items(client, "InferenceService", "serving.kserve.io/v1beta1")
    workloads, pods = {}, {}
    for isvc in isvcs:
        namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        listed = _items(client, "Pod", "v1", namespace=namespace, label_selector=f"{ISVC_POD_LABEL}={name}")
        for component in COMPONENTS:
            if not (isvc.get("spec") or {}).get(component):
                continue
            key = (namespace, name, component)
            workload_name = f"{name}-{component}"
            workloads[key] = _one(
                client, "Service", "serving.knative.dev/v1", namespace, workload_name
            ) or _one(client, "Deployment", "apps/v1", namespace, workload_name)
            pods[key] = [
                pod
                for pod in listed
                if (pod["metadata"].get("labels") or {}).get("component") == component
                and not pod["metadata"].get("deletionTimestamp")
            ]
    return {
        "isvcs": isvcs,
        "workloads": workloads,
        "pods": pods,
        "runtimes": _items(client, "ClusterServingRuntime", "serving.kserve.io/v1alpha1"),
        "config": _one(client, "ConfigMap", "v1", *CONFIG_MAP),
        "controller": _one(client, "Deployment", "apps/v1", *CONTROLLER),
    }
