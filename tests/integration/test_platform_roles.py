"""The platform roles against the local control plane, as a user runs them (`ansible-playbook site.yml ...`).

One ordered story (each step builds on the previous one, so the cluster is converged once):
preflight; --check on a clean cluster creates nothing; each --tags <component> converges only that
component; a second run changes nothing; --check --diff shows a settings change without making it; a mirror
file with a wrong checksum fails before anything is applied; uninstall refuses while users' resources exist;
KServe by Helm (the seed's way) converges, changes nothing on a second run and uninstalls; uninstall in
reverse order leaves the cluster as it was.
"""

import json
import shutil

import pytest

from devcluster.cluster import BIN_DIR
from tests.cluster_plugin import wait_for
from tests.helpers import recap, run_playbook
from tests.upstream import UPSTREAM_DIR

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MIRROR = UPSTREAM_DIR
COMPONENTS = ["cert_manager", "istio", "knative", "kserve"]
# What each component adds to a cluster: namespaces and the API groups of its CRDs.
FOOTPRINT = {
    "cert_manager": ({"cert-manager"}, {"cert-manager.io", "acme.cert-manager.io"}),
    "istio": (
        {"istio-system"},
        {"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"},
    ),
    "knative": (
        {"knative-serving"},
        {
            "serving.knative.dev",
            "networking.internal.knative.dev",
            "autoscaling.internal.knative.dev",
            "caching.internal.knative.dev",
        },
    ),
    "kserve": ({"kserve"}, {"serving.kserve.io"}),
}
STATE = {
    "cert_manager": "cert_manager_state",
    "istio": "istio_state",
    "knative": "knative_state",
    "kserve": "kserve_state",
}


def snapshot(api_client):
    """What the platform roles may add: namespaces, CRDs (by group), admission webhook configurations."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    crds = client.ApiextensionsV1Api(api_client).list_custom_resource_definition().items
    admission = client.AdmissionregistrationV1Api(api_client)
    return {
        "namespaces": {ns.metadata.name for ns in core.list_namespace().items},
        "crds": {crd.metadata.name for crd in crds},
        "crd_groups": {crd.spec.group for crd in crds},
        "webhooks": {w.metadata.name for w in admission.list_validating_webhook_configuration().items}
        | {w.metadata.name for w in admission.list_mutating_webhook_configuration().items},
    }


@pytest.fixture(scope="module")
def cluster(local_cluster):
    return local_cluster


@pytest.fixture(scope="module")
def api(cluster):
    return cluster.api_client()


def converge(cluster, *args, mirror=MIRROR, tags=None):
    # No knative_domain: the knative role finds the ingress's LoadBalancer address (the simulator gives it
    # 127.0.0.1) and picks 127.0.0.1.sslip.io, as on a cluster with a load balancer.
    extra = ["-e", f"kserve_ansible_mirror_dir={mirror}"]
    tags = tags or ",".join(COMPONENTS)
    return run_playbook(
        "site.yml", "--tags", tags, *extra, *args, kubeconfig=cluster.kubeconfig, timeout=1200
    )


def uninstall(cluster, component):
    return converge(cluster, "-e", f"{STATE[component]}=absent", tags=component)


def helm_binary():
    """The helm the local tools build put in the cache (devcluster/gotools), else helm on PATH."""
    cached = BIN_DIR / "helm"
    found = str(cached) if cached.is_file() else shutil.which("helm")
    assert found, "helm is needed: make tools builds it"
    return found


def ok(result):
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return recap(result.stdout)


@pytest.fixture(scope="module")
def baseline(cluster, api):
    """A cluster without the platform (earlier runs are uninstalled first), and its snapshot."""
    for component in reversed(COMPONENTS):
        ok(uninstall(cluster, component))
    return snapshot(api)


class TestPlatformRoles:
    def test_preflight_passes_on_the_local_cluster_and_names_what_is_missing(self, cluster):
        ok(run_playbook("site.yml", "--tags", "preflight", kubeconfig=cluster.kubeconfig))
        result = run_playbook(
            "site.yml",
            "--tags",
            "preflight",
            "-e",
            "preflight_required_cpu=1000",
            kubeconfig=cluster.kubeconfig,
        )
        assert result.returncode != 0
        assert "not enough CPU" in result.stdout
        assert "the stack needs 1000" in result.stdout

    def test_check_mode_on_a_clean_cluster_reports_changes_and_creates_nothing(self, cluster, api, baseline):
        counts = ok(converge(cluster, "--check"))
        assert counts["changed"] >= len(COMPONENTS)
        assert snapshot(api) == baseline

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_each_tag_converges_only_its_component(self, cluster, api, baseline, component):
        before = snapshot(api)
        ok(converge(cluster, tags=component))
        after = snapshot(api)
        namespaces, groups = FOOTPRINT[component]
        assert after["namespaces"] - before["namespaces"] == namespaces
        assert after["crd_groups"] - before["crd_groups"] == groups

    def test_converged_platform_is_usable(self, cluster, api):
        from kubernetes import client

        apps = client.AppsV1Api(api)
        for namespace in ("cert-manager", "istio-system", "knative-serving", "kserve"):
            for deployment in apps.list_namespaced_deployment(namespace).items:
                available = {c.type: c.status for c in deployment.status.conditions or []}.get("Available")
                assert available == "True", f"{namespace}/{deployment.metadata.name} not Available"
        core = client.CoreV1Api(api)
        gateway = core.read_namespaced_service("istio-ingressgateway", "istio-system")
        assert [i.ip for i in gateway.status.load_balancer.ingress] == ["127.0.0.1"]
        domain = core.read_namespaced_config_map("config-domain", "knative-serving").data
        assert domain["127.0.0.1.sslip.io"] == ""
        config = core.read_namespaced_config_map("inferenceservice-config", "kserve").data
        assert json.loads(config["deploy"]) == {"defaultDeploymentMode": "Serverless"}
        assert json.loads(config["storageInitializer"])["memoryLimit"] == "1Gi"
        runtimes = client.CustomObjectsApi(api).list_cluster_custom_object(
            "serving.kserve.io", "v1alpha1", "clusterservingruntimes"
        )
        assert "kserve-huggingfaceserver" in {r["metadata"]["name"] for r in runtimes["items"]}

    def test_second_run_changes_nothing(self, cluster):
        assert ok(converge(cluster))["changed"] == 0

    def test_check_diff_shows_a_settings_change_without_making_it(self, cluster, api):
        from kubernetes import client

        result = converge(cluster, "--check", "--diff", "-e", "kserve_storage_initializer_memory_limit=3Gi")
        assert ok(result)["changed"] == 1
        assert '"memoryLimit": "3Gi"' in result.stdout
        config = client.CoreV1Api(api).read_namespaced_config_map("inferenceservice-config", "kserve").data
        assert json.loads(config["storageInitializer"])["memoryLimit"] == "1Gi"

    def test_wrong_checksum_fails_before_anything_is_applied(self, cluster, api, tmp_path):
        mirror = tmp_path / "mirror"
        shutil.copytree(MIRROR / "cert-manager", mirror / "cert-manager")
        tampered = mirror / "cert-manager" / "1.16.2" / "cert-manager.yaml"
        tampered.write_text(tampered.read_text().replace("replicas: 1", "replicas: 5", 1))
        before = snapshot(api)
        result = converge(cluster, mirror=mirror, tags="cert_manager")
        assert result.returncode != 0
        assert f"checksum mismatch for {tampered}" in result.stdout
        assert "nothing was applied" in result.stdout
        assert snapshot(api) == before

    def test_uninstall_refuses_while_users_resources_exist(self, cluster, api):
        from kubernetes import client

        custom = client.CustomObjectsApi(api)
        runtime = {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": "users-runtime", "namespace": "default"},
            "spec": {"supportedModelFormats": [{"name": "x"}], "containers": [{"name": "c", "image": "x"}]},
        }
        custom.create_namespaced_custom_object(
            "serving.kserve.io", "v1alpha1", "default", "servingruntimes", runtime
        )
        try:
            result = uninstall(cluster, "kserve")
            assert result.returncode != 0
            assert "refusing to delete CRDs that still have custom resources" in result.stdout
            assert "ServingRuntime default/users-runtime" in result.stdout
            assert "kserve" in snapshot(api)["namespaces"], "nothing may be deleted"
        finally:
            custom.delete_namespaced_custom_object(
                "serving.kserve.io", "v1alpha1", "default", "servingruntimes", "users-runtime"
            )

    def test_kserve_by_helm_the_seeds_way_converges_idempotently_and_uninstalls(self, cluster, api):
        from kubernetes import client

        helm = ["-e", "kserve_install_method=helm", "-e", f"kserve_helm_binary={helm_binary()}"]
        ok(uninstall(cluster, "kserve"))  # the manifests install, out of the way
        ok(converge(cluster, *helm, tags="kserve"))
        apps = client.AppsV1Api(api)

        def available():
            controller = apps.read_namespaced_deployment("kserve-controller-manager", "kserve")
            conditions = {c.type: c.status for c in controller.status.conditions or []}
            return controller if conditions.get("Available") == "True" else None

        # helm --wait can return in the second kwok marks a new pod Ready, before the pod runner's readiness
        # probe of the real manager has passed (devcluster/README.md, "Pods that run for real"): wait for it.
        controller = wait_for(available, 180, "KServe's controller Available after the Helm install")
        assert controller.metadata.annotations["meta.helm.sh/release-name"] == "kserve"
        config = client.CoreV1Api(api).read_namespaced_config_map("inferenceservice-config", "kserve").data
        assert json.loads(config["storageInitializer"])["memoryLimit"] == "1Gi"
        assert ok(converge(cluster, *helm, tags="kserve"))["changed"] == 0

        ok(converge(cluster, *helm, "-e", "kserve_state=absent", tags="kserve"))
        after = snapshot(api)
        assert "kserve" not in after["namespaces"]
        assert "serving.kserve.io" not in after["crd_groups"]
        ok(converge(cluster, tags="kserve"))  # back to the manifests install for the next test

    def test_uninstall_in_reverse_order_leaves_the_cluster_as_before(self, cluster, api, baseline):
        for component in reversed(COMPONENTS):
            ok(uninstall(cluster, component))
        assert snapshot(api) == baseline
