"""Check mode of our server-side apply (k8s_apply.Applier) when the cluster's CRD is older than the object:
a release that adds a field to a CRD (KServe 0.15.2's ClusterServingRuntime workerSpec) cannot be dry-run
before that CRD is applied, which only a real run does."""

from __future__ import annotations

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import k8s_api, manifests
from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_apply import Applier

from tests.unit.test_webhooks import DynamicClient, K8SClient, Resource

# The API server's answer to kserve-cluster-resources.yaml of 0.15.2 on a cluster with 0.14.1's CRDs.
OLDER_CRD = (
    "failed to create typed patch object (/kserve-huggingfaceserver-multinode; serving.kserve.io/v1alpha1, "
    "Kind=ClusterServingRuntime): .spec.workerSpec.pipelineParallelSize: field not declared in schema"
)
RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "kserve-huggingfaceserver-multinode"},
    "spec": {"workerSpec": {"pipelineParallelSize": 1}},
}
LIVE = {**RUNTIME, "spec": {"workerSpec": {}}, "metadata": {**RUNTIME["metadata"], "resourceVersion": "1"}}


class Kinds:
    def resource(self, obj):
        return Resource()


def applier(check_mode, live):
    warnings = []
    api = k8s_api.Api(K8SClient(DynamicClient([(OLDER_CRD, 500, "InternalError")])), check_mode=check_mode)
    api._warn = warnings.append
    api.kinds = Kinds()
    api.get = lambda resource, obj, metadata_only=True: live
    return Applier(api), warnings


@pytest.mark.parametrize(("live", "action"), [(LIVE, "updated"), (None, "created")])
def test_check_mode_reports_what_a_real_run_would_apply_after_the_newer_crd(live, action):
    apply, warnings = applier(check_mode=True, live=live)
    result = apply._apply_one(RUNTIME)
    assert (result.action, result.before, result.after) == (action, live, RUNTIME)
    assert result.note == "its CRD in the cluster is older"
    [warning] = warnings
    assert warning.startswith(
        "ClusterServingRuntime kserve-huggingfaceserver-multinode: not dry-run, the cluster's CRD does not "
        "declare a field of it yet ("
    )
    assert warning.endswith("field not declared in schema); a real run applies the newer CRD first")


def test_a_real_run_fails_with_the_api_servers_words():
    apply, warnings = applier(check_mode=False, live=LIVE)
    with pytest.raises(manifests.ManifestError, match="pipelineParallelSize: field not declared in schema"):
        apply._apply_one(RUNTIME)
    assert warnings == []
