"""Each KServe release of the catalog beside the default one, installed fresh as a user installs it
(issue #16): by its release manifests and by its Helm charts, on a local cluster of its own (it runs beside
the session's cluster tests: private_cluster), where Knative Serving, Istio and cert-manager stay and KServe
and the models are uninstalled between cases. In each case the guide's two InferenceServices become Ready
through that release's own controller (built from `github.com/kserve/kserve@<version>`; it writes
`status.deploymentMode`, "Serverless" in 0.15 and "Knative" in 0.16, which renamed the mode), and a second
run reports changed=0.

Needs the controllers of those releases built (`make tools` builds KSERVE_EXTRA_VERSIONS of
devcluster/gotools/versions.env).
"""

from __future__ import annotations

import json

import pytest

from devcluster.cluster import BIN_DIR
from tests.cluster_plugin import converge_local, local_playbook, wait_for
from tests.helpers import recap

# One case installs KServe and the models, runs again and uninstalls (the first also sets up the platform).
pytestmark = [pytest.mark.cluster, pytest.mark.private_cluster, pytest.mark.slow, pytest.mark.timeout(2400)]

NAMESPACE = "kserve-test"
GUIDE_MODELS = ("huggingface-distilbert", "kserve-custom-model-logger")
# (release, install method): each release by both (0.16.0 differs most: LLMInferenceService CRDs, controller,
# Certificate and webhooks in kserve.yaml; none of that in its kserve-crd and kserve charts). 0.14.1, the
# default, by both in test_platform_roles and the session's other modules.
CASES = [("0.15.2", "manifests"), ("0.15.2", "helm"), ("0.16.0", "manifests"), ("0.16.0", "helm")]
# What each release's controller writes in an InferenceService's status.deploymentMode for Serverless.
DEPLOYMENT_MODE = {"0.15.2": "Serverless", "0.16.0": "Knative"}


def kserve_args(version: str, method: str) -> list[str]:
    args = ["-e", f"kserve_version={version}", "-e", f"kserve_install_method={method}"]
    if method == "helm":
        args += ["-e", f"kserve_helm_binary={BIN_DIR / 'helm'}"]
    return args


def uninstall(cluster, *args: str):
    """The models, then KServe (playbooks/uninstall.yml, only those two tags), as installed by `args`."""
    result = local_playbook(cluster, "playbooks/uninstall.yml", *args, tags="models,kserve", timeout=1200)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return recap(result.stdout)


def get(cluster, *args) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def available(cluster, namespace: str, name: str) -> bool:
    deployment = get(cluster, "deployment", name, "-n", namespace)
    conditions = {c["type"]: c["status"] for c in deployment["status"].get("conditions", [])}
    return conditions.get("Available") == "True"


@pytest.fixture(scope="module")
def platform(own_cluster):
    """Knative Serving, Istio and cert-manager as the roles install them, and no KServe, on a cluster of the
    module's own (it runs beside the session's cluster tests)."""
    converge_local(own_cluster, "cert_manager,istio,knative", timeout=1800)
    return own_cluster


@pytest.mark.parametrize(("version", "method"), CASES, ids=[f"{v}-{m}" for v, m in CASES])
def test_a_fresh_install_serves_the_guides_models_through_that_releases_controller(platform, version, method):
    args = kserve_args(version, method)
    try:
        converge_local(platform, "kserve,models", *args)

        controller = get(platform, "deployment", "kserve-controller-manager", "-n", "kserve")
        images = [c["image"] for c in controller["spec"]["template"]["spec"]["containers"]]
        assert f"kserve/kserve-controller:v{version}" in images
        # helm --wait may return while the pod runner's readiness probe of the real manager is still pending
        wait_for(lambda: available(platform, "kserve", "kserve-controller-manager"), 180, "the controller")
        if version == "0.16.0" and method == "manifests":
            assert available(platform, "kserve", "llmisvc-controller-manager")
            configs = get(platform, "llminferenceserviceconfigs", "-n", "kserve")["items"]
            assert len(configs) == 8

        for name in GUIDE_MODELS:
            isvc = get(platform, "inferenceservice", name, "-n", NAMESPACE)
            conditions = {c["type"]: c["status"] for c in isvc["status"]["conditions"]}
            assert conditions["Ready"] == "True", (name, isvc["status"])
            assert isvc["status"]["deploymentMode"] == DEPLOYMENT_MODE[version], name

        assert converge_local(platform, "kserve,models", *args)["changed"] == 0
    finally:
        uninstall(platform, *args)
    groups = {"serving.kserve.io", "inference.networking.x-k8s.io"}
    crds = get(platform, "crd")["items"]
    assert not [c["metadata"]["name"] for c in crds if c["spec"]["group"] in groups]
