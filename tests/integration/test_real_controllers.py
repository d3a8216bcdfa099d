"""The platform the roles install runs for real on the local cluster: KServe's and Knative's own controllers
and webhooks are the processes of the pods the roles created (devcluster/pod_runner.py), so the seed's two
InferenceServices are Ready because those controllers said so, with the Knative objects they created."""

from __future__ import annotations

import pytest
import requests
from kubernetes import client

from tests.cluster_plugin import converge_local, wait_for

NAMESPACE = "kserve-test"
HF, CUSTOM = "huggingface-distilbert", "kserve-custom-model-logger"
pytestmark = [pytest.mark.cluster]


def models(cluster, *extra: str):
    return converge_local(cluster, "models", *extra)


@pytest.fixture(scope="module")
def served(serving_platform):
    """The models role's two InferenceServices on the installed platform; deleted afterwards."""
    models(serving_platform)
    yield serving_platform
    models(serving_platform, "-e", "models_state=absent")


def knative(cluster, plural: str, name: str) -> dict:
    return client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        "serving.knative.dev", "v1", NAMESPACE, plural, name
    )


def ready(obj: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", [])
    )


def test_the_platforms_controllers_are_the_processes_of_their_pods(serving_platform):
    core = client.CoreV1Api(serving_platform.api_client())
    for namespace, app in (
        ("kserve", "control-plane=kserve-controller-manager"),
        ("knative-serving", "app=webhook"),
    ):
        pods = core.list_namespaced_pod(namespace, label_selector=app).items
        assert pods, f"no {app} pod in {namespace}"
        for pod in pods:
            statuses = {s.name: s for s in pod.status.container_statuses}
            process = statuses["manager" if namespace == "kserve" else "webhook"]
            # The pod runner's container ids name the local process; kwok's fake containers have none.
            assert process.container_id.startswith("ksa://") and process.ready, process
    # Knative's webhook manages its own certificate and put its CA into its configurations.
    admission = client.AdmissionregistrationV1Api(serving_platform.api_client())
    webhook = admission.read_validating_webhook_configuration("validation.webhook.serving.knative.dev")
    assert all(w.client_config.ca_bundle for w in webhook.webhooks)


def test_each_inference_service_gets_the_knative_objects_of_the_real_controllers(served):
    custom = client.CustomObjectsApi(served.api_client())
    for name in (HF, CUSTOM):
        isvc = custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", name
        )
        assert ready(isvc)
        ksvc = knative(served, "services", f"{name}-predictor")
        assert ready(ksvc)
        assert ksvc["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
        route = knative(served, "routes", f"{name}-predictor")
        assert ready(route) and route["status"]["url"] == isvc["status"]["components"]["predictor"]["url"]
        revision = knative(
            served, "revisions", isvc["status"]["components"]["predictor"]["latestReadyRevision"]
        )
        assert ready(revision)
        kingress = custom.get_namespaced_custom_object(
            "networking.internal.knative.dev", "v1alpha1", NAMESPACE, "ingresses", f"{name}-predictor"
        )
        assert ready(kingress)
    listing = served.kubectl("get", "ksvc,route,revision,kingress", "-n", NAMESPACE).stdout
    for kind in ("service.serving.knative.dev", "route.serving.knative.dev", "revision.serving.knative.dev"):
        assert f"{kind}/{HF}-predictor" in listing and f"{kind}/{CUSTOM}-predictor" in listing
    header = served.kubectl("get", "isvc", "-n", NAMESPACE).stdout.splitlines()[0].split()
    assert header == [
        "NAME",
        "URL",
        "READY",
        "PREV",
        "LATEST",
        "PREVROLLEDOUTREVISION",
        "LATESTREADYREVISION",
        "AGE",
    ]


def test_the_hugging_face_predictor_runs_the_runtime_with_the_roles_arguments(served):
    custom = client.CustomObjectsApi(served.api_client())
    isvc = custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", HF
    )
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    revision = isvc["status"]["components"]["predictor"]["latestReadyRevision"]
    deployment = client.AppsV1Api(served.api_client()).read_namespaced_deployment(
        f"{revision}-deployment", NAMESPACE
    )
    containers = {c.name: c for c in deployment.spec.template.spec.containers}
    assert set(containers) == {"kserve-container", "queue-proxy"}
    runtime = containers["kserve-container"]
    assert runtime.image == "kserve/huggingfaceserver:v0.14.1"  # the ClusterServingRuntime KServe chose
    args = runtime.args
    assert "--model_id=distilbert-base-uncased-finetuned-sst-2-english" in args
    assert "--enable_docs_url=True" in args
    # The runtime's own --model_name={{.Name}} comes first; the role's model name is the last one, which wins.
    assert [a for a in args if a.startswith("--model_name=")][-1] == "--model_name=distilbert"
    selected = custom.get_cluster_custom_object(
        "serving.kserve.io", "v1alpha1", "clusterservingruntimes", "kserve-huggingfaceserver"
    )
    formats = selected["spec"]["supportedModelFormats"]
    assert any(f["name"] == "huggingface" for f in formats)
    assert "v2" in selected["spec"]["protocolVersions"]


def test_the_custom_model_answers_the_guides_curl_through_the_ingress(served):
    isvc_host = f"{CUSTOM}.{NAMESPACE}.{served.domain}"

    def answer():
        response = requests.post(
            f"http://127.0.0.1:{served.ingress_port}/v1/models/bert-sentiment:predict",
            headers={"Host": isvc_host},
            json={"instances": ["hello I am doing good"]},
            timeout=30,
        )
        return response if response.status_code == 200 else None

    response = wait_for(answer, 120, "the custom model's answer through the ingress")
    assert response.json()["predictions"][0]["label"] in ("NEGATIVE", "POSITIVE")
    # Served by the revision the real Knative controller created, its queue-proxy and KServe's agent.
    revision = response.headers.get("x-simulator-revision", "")
    assert revision.startswith(f"{CUSTOM}-predictor-")
    pod = (
        client.CoreV1Api(served.api_client())
        .list_namespaced_pod(NAMESPACE, label_selector=f"serving.knative.dev/revision={revision}")
        .items[0]
    )
    assert {s.name for s in pod.status.container_statuses} == {"kserve-container", "queue-proxy", "agent"}
    assert all(s.container_id.startswith("ksa://") for s in pod.status.container_statuses)
