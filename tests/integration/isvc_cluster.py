"""InferenceServices on the local control plane for the wait and probe integration tests: the CRD (read
from the upstream mirror at test time), a test namespace, and the few object changes the tests make with
the official client (the modules under test use kubernetes.core's)."""

from __future__ import annotations

import re
import time

import yaml
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from kubernetes import client as k8s
from kubernetes import config as kube_config

from tests.upstream import default_release_path

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
KSERVE_MANIFEST = default_release_path("kserve", "kserve_version", "kserve.yaml")  # read-only mirror
# Runs on any fake node (kwok; no local program, so no process); not our model server. dev.local is one of
# the registries Knative skips resolving tags to digests for (config-deployment): there is no registry here.
DEFAULT_IMAGE = "dev.local/echo-model:1.0"
# Our model server (devcluster/programs.yaml): the pod runner runs `python -m model.server` for it, with the
# local tiny model at /mnt/models. ghcr.io: Knative resolves no tag there either.
MODEL_SERVER_IMAGE = "ghcr.io/kserve-ansible/kserve-ansible-model:0.1.0"


def ensure_inference_service_crd(api: k8s.ApiClient) -> None:
    """Create the InferenceService CRD from the upstream mirror unless the cluster already has it."""
    extensions = k8s.ApiextensionsV1Api(api)
    name = f"{PLURAL}.{GROUP}"
    try:
        extensions.read_custom_resource_definition(name)
    except k8s.ApiException as error:
        if error.status != 404:
            raise
        crd = next(
            doc
            for doc in yaml.safe_load_all(KSERVE_MANIFEST.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition" and doc["metadata"]["name"] == name
        )
        extensions.create_custom_resource_definition(crd)
    for _ in range(300):
        status = extensions.read_custom_resource_definition(name).status
        if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.1)
    raise AssertionError(f"CRD {name} not Established")


class IsvcCluster:
    """One test namespace of InferenceServices."""

    def __init__(self, kubeconfig: str, namespace: str):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.api = kube_config.new_client_from_config(config_file=kubeconfig)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.core = k8s.CoreV1Api(self.api)

    def set_up(self) -> IsvcCluster:
        ensure_inference_service_crd(self.api)
        try:
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        except k8s.ApiException as error:
            if error.status != 409:
                raise
        return self

    def tear_down(self) -> None:
        self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)

    def create(
        self,
        name: str,
        cpu: str = "50m",
        image: str = DEFAULT_IMAGE,
        annotations: dict | None = None,
        args: list[str] | None = None,
        limits: bool = True,
        readiness_probe: dict | None = None,
    ) -> dict:
        """limits: the same as the requests (else KServe's webhook sets its default limits, 1 CPU / 2Gi)."""
        container = {"name": "kserve-container", "image": image, **({"args": args} if args else {})}
        if readiness_probe:
            container["readinessProbe"] = readiness_probe
        requests = {"cpu": cpu, "memory": "64Mi"}
        container["resources"] = {"requests": requests, **({"limits": dict(requests)} if limits else {})}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": self.namespace, "annotations": annotations or {}},
            "spec": {"predictor": {"containers": [container]}},
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def set_cpu(self, name: str, cpu: str) -> dict:
        """A spec change: generation + 1, and a new Knative revision."""
        containers = self.get(name)["spec"]["predictor"]["containers"]
        for bound in ("requests", "limits"):
            if bound in containers[0]["resources"]:
                containers[0]["resources"][bound]["cpu"] = cpu
        patch = {"spec": {"predictor": {"containers": containers}}}
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except k8s.ApiException as error:
            if error.status != 404:
                raise

    def predictor_pods(self, name: str) -> list:
        selector = f"serving.kserve.io/inferenceservice={name}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def apiserver_metric(self, metric: str, **labels: str) -> float:
        """The sum of a metric of the API server (its /metrics) over the series with these labels."""
        response = self.api.call_api("GET", f"{self.api.configuration.host}/metrics")
        response.read()
        text = response.data.decode()
        total = 0.0
        for series, value in re.findall(rf"^{metric}\{{(.*)\}} (\S+)$", text, re.MULTILINE):
            found = dict(re.findall(r'(\w+)="([^"]*)"', series))
            if all(found.get(key) == wanted for key, wanted in labels.items()):
                total += float(value)
        return total

    def node_arch(self) -> str:
        """The CPU architecture of the (fake) nodes."""
        return self.core.list_node().items[0].metadata.labels["kubernetes.io/arch"]

    def module_client(self, kubeconfig: str | None = None):
        """kubernetes.core's client, as the modules build it."""
        return get_api_client(kubeconfig=kubeconfig or self.kubeconfig)

    def module_args(self, name: str, **extra) -> dict:
        return {"name": name, "namespace": self.namespace, "kubeconfig": self.kubeconfig, **extra}
