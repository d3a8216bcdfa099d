"""The monitoring role against the local control plane, as a user runs it (`ansible-playbook
playbooks/monitoring.yml ...`).

One ordered story: --check on a clean cluster creates nothing; a run creates every piece (the Prometheus
config in the cluster is the one the tests scrape real model servers with); a second run and --check change
nothing; switching logs off removes only the logging pieces; uninstall leaves nothing behind.

Runs keep the role's default `monitoring_wait: true`, as molecule and site.yml run it: each run returns once
the Deployments and the DaemonSet are ready (the CloudEvents sink's pod runs for real, a Python process with
its readiness probe; the others are kwok's, made Ready again after a node missed heartbeats).
"""

from __future__ import annotations

import pytest

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
    extra = ["-e", f"kserve_ansible_mirror_dir={MIRROR}"]
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

        # the run waited for them: every Deployment available, the DaemonSet ready on every node
        for name in DEPLOYMENTS:
            assert apps.read_namespaced_deployment_status(name, NAMESPACE).status.available_replicas == 1, (
                name
            )
        promtail = apps.read_namespaced_daemon_set_status("promtail", NAMESPACE).status
        assert promtail.number_ready == promtail.desired_number_scheduled == len(core.list_node().items)

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
