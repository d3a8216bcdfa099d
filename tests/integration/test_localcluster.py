"""The local control plane itself: what a user of `python -m devcluster` gets."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid

import pytest
import yaml
from kubernetes import client
from kubernetes import watch as k8s_watch

from devcluster.cluster import COMPONENTS
from devcluster.processes import is_running, listening_ports
from tests.cluster_plugin import devcluster_cli, wait_for
from tests.upstream import UPSTREAM_DIR, platform_crds

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(local_cluster):
    core = client.CoreV1Api(local_cluster.api_client())
    name = f"lc-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: _has_default_service_account(core, name), 60, "the namespace's default ServiceAccount")
    yield name
    core.delete_namespace(name)


def _has_default_service_account(core, namespace: str) -> bool:
    return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(namespace).items)


def _deployment(name: str, cpu: str) -> dict:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27", "resources": {"requests": {"cpu": cpu}}}
                    ]
                },
            },
        },
    }


def test_kubectl_shows_three_fake_nodes_ready_with_4_cpu_and_8gi(local_cluster):
    nodes = json.loads(local_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 3
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        assert node["status"]["allocatable"]["cpu"] == "4"
        assert node["status"]["allocatable"]["memory"] == "8Gi"


def test_kubectl_version_is_v1_34_4_on_both_sides(local_cluster):
    versions = json.loads(local_cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == "v1.34.4"
    assert versions["clientVersion"]["gitVersion"] == "v1.34.4"


def test_a_deployment_becomes_available(local_cluster, namespace):
    apps = client.AppsV1Api(local_cluster.api_client())
    apps.create_namespaced_deployment(namespace, _deployment("web", "100m"))

    def available():
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.available_replicas == 2 and any(
            c.type == "Available" and c.status == "True" for c in status.conditions or []
        )

    wait_for(available, 60, "Deployment web Available with 2 replicas")
    pods = client.CoreV1Api(local_cluster.api_client()).list_namespaced_pod(namespace).items
    assert {p.status.phase for p in pods} == {"Running"}
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)


def test_a_pod_the_node_controller_marked_not_ready_is_ready_again_on_its_ready_node(
    local_cluster, namespace
):
    """After an API server or etcd outage, the node lifecycle controller marks the pods of nodes whose lease
    went stale Ready=False (MarkPodsNotReady: that condition only). A kubelet writes Ready=True again once it
    reaches the API server; kwok's stage does here, so Deployments become available again."""
    apps = client.AppsV1Api(local_cluster.api_client())
    core = client.CoreV1Api(local_cluster.api_client())
    apps.create_namespaced_deployment(namespace, _deployment("web", "100m"))

    def available():
        return apps.read_namespaced_deployment_status("web", namespace).status.available_replicas == 2

    wait_for(available, 60, "Deployment web Available with 2 replicas")
    pod = core.list_namespaced_pod(namespace, label_selector="app=web").items[0]
    for condition in pod.status.conditions:
        if condition.type == "Ready":
            condition.status = "False"  # what the node lifecycle controller writes, with an update
    core.replace_namespaced_pod_status(pod.metadata.name, namespace, pod)
    wait_for(lambda: not available(), 30, "the Deployment to count the pod unavailable")

    def pod_ready():
        conditions = core.read_namespaced_pod_status(pod.metadata.name, namespace).status.conditions
        return {c.type: c.status for c in conditions}.get("Ready") == "True"

    wait_for(pod_ready, 30, f"pod {pod.metadata.name} Ready again")
    wait_for(available, 30, "Deployment web Available with 2 replicas again")


def test_a_pod_the_runner_runs_is_not_ready_before_its_probe_passes_and_a_kwok_pod_is(
    local_cluster, namespace
):
    """kwok marks the pods it plays Running and Ready at once; a pod whose process the pod runner runs is
    Ready only once its readiness probe passes, as with a kubelet (never for a moment before: Knative's
    autoscaler would count it, and its revision would stay Ready whatever the process does next)."""
    core = client.CoreV1Api(local_cluster.api_client())
    seen: list[tuple[str, str | None]] = []  # (pod, its Ready condition) in every status the API server sent
    watcher = k8s_watch.Watch()

    # every change after this point is delivered, however late the watch connects
    since = core.list_namespaced_pod(namespace).metadata.resource_version

    def watch():
        stream = watcher.stream(
            core.list_namespaced_pod, namespace, resource_version=since, timeout_seconds=300
        )
        for event in stream:
            pod = event["object"]
            ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready")
            seen.append((pod.metadata.name, ready))

    threading.Thread(target=watch, daemon=True).start()
    never_serves = {  # this machine's Python runs it (programs.yaml: docker.io/python); nothing listens
        "name": "app",
        "image": "python:3.11-slim",
        "command": ["python", "-c", "import time; time.sleep(3600)"],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    kwoks = {"name": "web", "image": "nginx:1.27"}
    for name, container in (("runner-pod", never_serves), ("kwok-pod", kwoks)):
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": name}, "spec": {"containers": [container]}}
        )

    def probe_failed():
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=runner-pod").items
        return any(e.reason == "Unhealthy" for e in events)

    wait_for(probe_failed, 120, "runner-pod's readiness probe to fail")
    wait_for(lambda: ("kwok-pod", "True") in seen, 60, "kwok-pod Ready")
    watcher.stop()
    runner = core.read_namespaced_pod("runner-pod", namespace)
    assert runner.status.container_statuses[0].state.running, runner.status
    assert [ready for pod, ready in seen if pod == "runner-pod"] and ("runner-pod", "True") not in seen, seen


def test_a_deployment_asking_for_100_cpus_stays_pending_with_a_failed_scheduling_event(
    local_cluster, namespace
):
    apps = client.AppsV1Api(local_cluster.api_client())
    core = client.CoreV1Api(local_cluster.api_client())
    apps.create_namespaced_deployment(namespace, _deployment("greedy", "100"))

    def failed_scheduling():
        events = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
        return [e.message for e in events]

    messages = wait_for(failed_scheduling, 60, "a FailedScheduling event")
    assert "0/3 nodes are available: 3 Insufficient cpu." in messages[0]
    pods = core.list_namespaced_pod(namespace, label_selector="app=greedy").items
    assert pods and {p.status.phase for p in pods} == {"Pending"}
    status = apps.read_namespaced_deployment_status("greedy", namespace).status
    assert not status.available_replicas


@pytest.mark.skipif(not UPSTREAM_DIR.is_dir(), reason=f"no upstream mirror at {UPSTREAM_DIR}")
def test_the_platforms_upstream_crds_apply_server_side_and_become_established(local_cluster):
    crds = platform_crds()
    applied = local_cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=kserve-ansible-test",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(crds),
    )
    assert applied.stdout.count("serverside-applied") == len(crds)
    names = [crd["metadata"]["name"] for crd in crds]
    local_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=120s", *[f"crd/{n}" for n in names]
    )
    assert "inferenceservices.serving.kserve.io" in names and "certificates.cert-manager.io" in names


def test_admission_webhooks_are_called(local_cluster, namespace):
    """Admission webhooks are on, as on a real cluster: a Fail-policy webhook nobody answers rejects the
    writes it matches (what a user sees while a platform's webhook does not serve yet)."""
    admission = client.AdmissionregistrationV1Api(local_cluster.api_client())
    name = f"unreachable-{namespace}"
    admission.create_validating_webhook_configuration(
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "deny.example.com",
                    "clientConfig": {"url": "https://127.0.0.1:1/deny"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ],
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        }
    )
    try:
        core = client.CoreV1Api(local_cluster.api_client())
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": "refused"}})
        assert refused.value.status == 500, refused.value
        message = json.loads(refused.value.body)["message"]
        assert 'failed calling webhook "deny.example.com"' in message and "connection refused" in message
    finally:
        admission.delete_validating_webhook_configuration(name)
    wait_for(
        lambda: _creates(core, namespace, "created"), 30, "a create once the webhook configuration is gone"
    )


def _creates(core, namespace: str, name: str) -> bool:
    try:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    except client.ApiException as error:
        if "failed calling webhook" in (error.body or ""):
            return False  # the API server has not dropped the deleted configuration yet
        raise
    return True


def test_up_is_idempotent_a_crash_is_reported_and_down_leaves_nothing_running(tmp_path):
    """A second, private cluster (its own state dir and ports), driven through the command line."""
    state_dir = tmp_path / "cluster"
    up = devcluster_cli(state_dir, "up")
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == str(state_dir / "kubeconfig")
        state = json.loads((state_dir / "cluster.json").read_text())
        assert set(state["pids"]) == set(COMPONENTS)

        again = devcluster_cli(state_dir, "up")
        assert again.returncode == 0, again.stderr
        assert json.loads((state_dir / "cluster.json").read_text())["pids"] == state["pids"]
        assert "started" not in again.stderr

        os.kill(state["pids"]["kube-scheduler"], signal.SIGKILL)
        wait_for(lambda: not is_running(state["pids"]["kube-scheduler"]), 10, "kube-scheduler to die")
        status = devcluster_cli(state_dir, "status")
        assert status.returncode == 1
        assert any(line.split()[:2] == ["kube-scheduler", "crashed"] for line in status.stdout.splitlines())

        restarted = devcluster_cli(state_dir, "up")
        assert restarted.returncode == 0, restarted.stderr
        assert "component kube-scheduler" in restarted.stderr and "not running any more" in restarted.stderr
        assert devcluster_cli(state_dir, "status").returncode == 0
        state = json.loads((state_dir / "cluster.json").read_text())
    finally:
        down = devcluster_cli(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert not [name for name, pid in state["pids"].items() if is_running(pid)]
    assert not set(state["ports"].values()) & listening_ports()
    assert devcluster_cli(state_dir, "status").returncode == 3  # not started
