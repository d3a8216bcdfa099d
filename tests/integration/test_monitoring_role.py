"""The monitoring role against the local control plane, as a user runs it (`ansible-playbook
playbooks/monitoring.yml ...`).

One ordered story: --check on a clean cluster creates nothing; a run creates every piece (the Prometheus
config in the cluster is the one the tests scrape real model servers with); a second run and --check change
nothing; switching logs off removes only the logging pieces; uninstall leaves nothing behind.

Runs pass `monitoring_wait=false`: the local cluster's fake kubelet (kwok) marks pods Running once, and a node
that misses heartbeats on a busy machine leaves them NotReady for good, which would time the waits out for
reasons that are not the role's. The pods' creation is checked instead (the API server validated their specs).
"""

from __future__ import annotations

import pytest

from tests.cluster_plugin import wait_for
from tests.helpers import recap, run_playbook
from tests.monitoring.role_render import render_template
from tests.upstream import UPSTREAM_DIR

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MIRROR = UPSTREAM_DIR
NAMESPACE = "kserve-monitoring"
DEPLOYMENTS = {"prometheus", "grafana", "kserve-logger-sink", "loki"}
LOGGING = {"kserve-logger-sink", "loki"}
CLUSTER_ROLES = {f"{NAMESPACE}-prometheus", f"{NAMESPACE}-promtail"}


def monitoring(cluster, *args, check=False):
    extra = ["-e", "monitoring_wait=false", "-e", f"kserve_ansible_mirror_dir={MIRROR}"]
    result = run_playbook(
        "playbooks/monitoring.yml", *extra, *args, kubeconfig=cluster.kubeconfig, check=check, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return recap(result.stdout)


@pytest.fixture(scope="module")
def cluster(local_cluster):
    return local_cluster


@pytest.fixture(scope="module")
def apis(cluster):
    from kubernetes import client

    api_client = cluster.api_client()
    return (
        client.CoreV1Api(api_client),
        client.AppsV1Api(api_client),
        client.RbacAuthorizationV1Api(api_client),
    )


def namespaces(core) -> set[str]:
    return {ns.metadata.name for ns in core.list_namespace().items}


def deployments(apps) -> set[str]:
    return {d.metadata.name for d in apps.list_namespaced_deployment(NAMESPACE).items}


def monitoring_cluster_roles(rbac) -> set[str]:
    return {role.metadata.name for role in rbac.list_cluster_role().items} & CLUSTER_ROLES


class TestMonitoringRole:
    def test_check_mode_on_a_clean_cluster_creates_nothing(self, cluster, apis):
        core, _, _ = apis
        assert NAMESPACE not in namespaces(core), "leftover from an earlier run"

        counters = monitoring(cluster, check=True)

        assert counters["changed"] > 0
        assert NAMESPACE not in namespaces(core)

    def test_a_run_creates_every_piece(self, cluster, apis):
        core, apps, rbac = apis

        counters = monitoring(cluster)

        assert counters["changed"] > 0
        assert deployments(apps) == DEPLOYMENTS
        assert apps.read_namespaced_daemon_set("promtail", NAMESPACE).spec.template.spec.containers
        assert monitoring_cluster_roles(rbac) == CLUSTER_ROLES
        config = core.read_namespaced_config_map("prometheus-config", NAMESPACE).data["prometheus.yml"]
        # what the real-Prometheus tests scrape with
        assert config == render_template("prometheus-config.yaml.j2")
        knative = core.read_namespaced_config_map("grafana-dashboards-knative", NAMESPACE).data
        assert sorted(knative) == [
            "knative-control-plane-efficiency.json",
            "knative-reconciler.json",
            "knative-revision-cpu-memory-metrics.json",
            "knative-scaling.json",
            "knative-serving-http-requests.json",
        ]

        def every_deployment_has_its_pod():
            pods = core.list_namespaced_pod(NAMESPACE).items
            names = {pod.metadata.labels.get("app.kubernetes.io/name") for pod in pods}
            return DEPLOYMENTS | {"promtail"} <= names

        wait_for(every_deployment_has_its_pod, 60, "a pod for every Deployment and the DaemonSet")

    def test_second_run_and_check_mode_change_nothing_and_keep_the_grafana_password(self, cluster, apis):
        core, _, _ = apis
        password = core.read_namespaced_secret("grafana-admin", NAMESPACE).data["admin-password"]

        assert monitoring(cluster)["changed"] == 0
        assert monitoring(cluster, check=True)["changed"] == 0
        assert core.read_namespaced_secret("grafana-admin", NAMESPACE).data["admin-password"] == password

    def test_switching_logs_off_removes_only_the_logging_pieces(self, cluster, apis):
        _, apps, rbac = apis

        monitoring(cluster, "-e", "monitoring_logs_enabled=false")

        assert deployments(apps) == DEPLOYMENTS - LOGGING
        assert not apps.list_namespaced_daemon_set(NAMESPACE).items
        assert monitoring_cluster_roles(rbac) == {f"{NAMESPACE}-prometheus"}

    def test_uninstall_leaves_nothing_behind(self, cluster, apis):
        core, _, rbac = apis

        monitoring(cluster, "-e", "monitoring_state=absent")

        assert NAMESPACE not in namespaces(core)
        assert monitoring_cluster_roles(rbac) == set()
        assert monitoring(cluster, "-e", "monitoring_state=absent")["changed"] == 0
