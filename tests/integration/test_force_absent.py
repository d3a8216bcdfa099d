"""`*_force_absent` against the local control plane: every role uninstalls its release with k8s_manifest_set
`state: absent`, and `<role>_force_absent` is that module's `force_absent`. A user's custom resource whose
controller is gone keeps a finalizer nobody removes: without force_absent the uninstall refuses and deletes
nothing; with it the resource is deleted, its stuck finalizer stripped after half of `wait_timeout`, and the
CRD goes."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from kubernetes import client

from tests.integration.module_runner import run_module

pytestmark = pytest.mark.cluster

GROUP, PLURAL, KIND = "force-absent.kserve-ansible.io", "widgets", "Widget"
CRD_NAME = f"{PLURAL}.{GROUP}"
NAMESPACE = "force-absent-test"
STUCK = f"{GROUP}/held-by-a-controller-that-is-gone"
WAIT_TIMEOUT = 20  # finalizers are stripped after half of it


def release_manifest() -> list[dict]:
    """A release's manifest as the roles install one: its namespace and a namespaced CRD."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "listKind": f"{KIND}List"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        },
    ]


@pytest.fixture
def release(local_cluster, tmp_path):
    """The release installed with k8s_manifest_set, as a role installs it; module args for its uninstall."""
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump_all(release_manifest()))
    args = {
        "sources": [{"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}],
        "kubeconfig": local_cluster.kubeconfig,
        "wait_timeout": WAIT_TIMEOUT,
    }
    installed = run_module("k8s_manifest_set", args)
    assert not installed.get("failed"), installed.get("msg")
    yield args
    # whatever the test left: the finalizer stripped, the CRD and namespace deleted
    custom = client.CustomObjectsApi(local_cluster.api_client())
    try:
        custom.patch_namespaced_custom_object(
            GROUP, "v1", NAMESPACE, PLURAL, "users-widget", {"metadata": {"finalizers": None}}
        )
    except client.ApiException as error:
        if error.status != 404:
            raise
    run_module("k8s_manifest_set", {**args, "state": "absent", "force_absent": True})


def users_widget_with_a_stuck_finalizer(local_cluster) -> None:
    custom = client.CustomObjectsApi(local_cluster.api_client())
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": KIND,
        "metadata": {"name": "users-widget", "namespace": NAMESPACE, "finalizers": [STUCK]},
        "spec": {"size": 3},
    }
    custom.create_namespaced_custom_object(GROUP, "v1", NAMESPACE, PLURAL, body)


def crd_exists(local_cluster) -> bool:
    extensions = client.ApiextensionsV1Api(local_cluster.api_client())
    return any(crd.metadata.name == CRD_NAME for crd in extensions.list_custom_resource_definition().items)


def test_uninstall_refuses_and_deletes_nothing_while_a_users_resource_exists(local_cluster, release):
    users_widget_with_a_stuck_finalizer(local_cluster)
    result = run_module("k8s_manifest_set", {**release, "state": "absent"})
    assert result["failed"]
    assert "refusing to delete CRDs that still have custom resources (nothing was deleted)" in result["msg"]
    assert f"{CRD_NAME}: {KIND} {NAMESPACE}/users-widget" in result["msg"]
    assert "*_force_absent" in result["msg"]
    assert crd_exists(local_cluster)
    custom = client.CustomObjectsApi(local_cluster.api_client())
    widget = custom.get_namespaced_custom_object(GROUP, "v1", NAMESPACE, PLURAL, "users-widget")
    assert "deletionTimestamp" not in widget["metadata"]


def test_force_absent_deletes_it_strips_its_stuck_finalizer_and_uninstalls(local_cluster, release):
    users_widget_with_a_stuck_finalizer(local_cluster)
    result = run_module("k8s_manifest_set", {**release, "state": "absent", "force_absent": True})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"]
    warnings = " ".join(result.get("warnings", []))
    assert f"force_absent: deleting 1 custom resources of {CRD_NAME}" in warnings
    assert f"force_absent: removing stuck finalizers ['{STUCK}'] of {CRD_NAME} users-widget" in warnings
    assert result["summary"] == {"deleted": 2}
    assert not crd_exists(local_cluster)
    core = client.CoreV1Api(local_cluster.api_client())
    assert NAMESPACE not in {ns.metadata.name for ns in core.list_namespace().items}
