"""User stories of serving on the local cluster, decided by the real KServe 0.14.1 and Knative Serving 1.16
controllers and webhooks the roles install (`serving_platform`): our model server image served through the
ingress, a predictor the scheduler cannot place, an image for another architecture (the fake kubelet's exec
format error), a canary split between two revisions then promoted, Knative's config-domain, a model format
picking its ClusterServingRuntime with the storage-initializer KServe's pod mutator injects, and the
cert-manager stand-in's Certificates. Every status asserted here is written by KServe or Knative."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from kubernetes import client

from devcluster.ingress import REVISION_HEADER
from tests.cluster_plugin import wait_for

pytestmark = [pytest.mark.cluster]

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
# Our model server: the pod runner runs `python -m model.server` with the local tiny model at /mnt/models.
OUR_IMAGE = "ghcr.io/kserve-ansible/kserve-ansible-model:0.1.0"
MODEL_ARGS = ["--model_name=sentiment", "--model_dir=/mnt/models"]
# As the models role renders it: Ready once the model has loaded (the server listens, and answers 503 there,
# while it loads; Knative's default TCP probe would make the InferenceService Ready before that).
MODEL_PROBE = {"httpGet": {"path": "/v1/models/sentiment", "port": 8080}, "periodSeconds": 2}
OUR_SERVER = {"image": OUR_IMAGE, "args": MODEL_ARGS, "readinessProbe": MODEL_PROBE}
# No local program: kwok's pods (Running and Ready, no process). dev.local: Knative resolves no tag there.
OTHER_IMAGE = "dev.local/echo-model:1.0"
ARM64_ONLY_IMAGE = "dev.local/echo-model:1.0-arm64"  # fake kubelet convention: -arm64 tag = arm64 only
KNATIVE = "knative-serving"


@pytest.fixture(scope="module")
def namespace(serving_platform):
    core = client.CoreV1Api(serving_platform.api_client())
    name = f"serving-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    custom = client.CustomObjectsApi(serving_platform.api_client())
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, PLURAL)
    core.delete_namespace(name)


class Isvcs:
    def __init__(self, cluster, namespace: str):
        self.cluster = cluster
        self.namespace = namespace
        self.api = cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def create(self, name: str, predictor: dict, **metadata) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": self.namespace, **metadata},
            "spec": {"predictor": predictor},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def create_container(self, name: str, container: dict, **metadata) -> None:
        self.create(name, {"containers": [{"name": "kserve-container", **container}]}, **metadata)

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch(self, name: str, body: dict) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def revision(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(
            "serving.knative.dev", "v1", self.namespace, "revisions", name
        )

    def wait_ready(self, name: str, timeout: float = 300) -> dict:
        def ready():
            isvc = self.get(name)
            status = isvc.get("status") or {}
            return (
                status.get("observedGeneration") == isvc["metadata"]["generation"]
                and condition(isvc, "Ready").get("status") == "True"
                and isvc
            )

        return wait_for(ready, timeout, f"InferenceService {name} Ready")

    def wait_condition(self, name: str, type_: str, status: str, timeout: float = 180) -> dict:
        def seen():
            isvc = self.get(name)
            return condition(isvc, type_).get("status") == status and isvc

        return wait_for(seen, timeout, f"{name} {type_}={status}")

    def predictor_pods(self, name: str) -> list:
        selector = f"serving.kserve.io/inferenceservice={name},component=predictor"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def pod_condition(self, pod: str, type_: str, status: str):
        conditions = self.core.read_namespaced_pod(pod, self.namespace).status.conditions or []
        return next((c for c in conditions if c.type == type_ and c.status == status), None)

    def post(self, host: str, path: str, body: dict) -> requests.Response:
        url = f"http://127.0.0.1:{self.cluster.ingress_port}{path}"
        return requests.post(url, json=body, headers={"Host": host}, timeout=60)


def condition(obj: dict, type_: str) -> dict:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


@pytest.fixture(scope="module")
def isvcs(serving_platform, namespace) -> Isvcs:
    return Isvcs(serving_platform, namespace)


def test_our_model_server_image_is_served_through_the_ingress_with_kserve_status(isvcs):
    isvcs.create_container("sentiment", OUR_SERVER)
    isvc = isvcs.wait_ready("sentiment")
    ns, domain = isvcs.namespace, isvcs.cluster.domain
    status = isvc["status"]
    assert status["url"] == f"http://sentiment.{ns}.{domain}"
    assert status["address"]["url"] == f"http://sentiment.{ns}.svc.cluster.local"
    predictor = status["components"]["predictor"]
    assert predictor["url"] == f"http://sentiment-predictor.{ns}.{domain}"
    assert (
        predictor["latestCreatedRevision"] == predictor["latestReadyRevision"] == "sentiment-predictor-00001"
    )
    assert predictor["traffic"] == [
        {"revisionName": "sentiment-predictor-00001", "percent": 100, "latestRevision": True}
    ]
    # KServe may write Ready before its model status catches up (the pods are read in the same reconcile).
    model = wait_for(
        lambda: (
            (m := isvcs.get("sentiment")["status"]["modelStatus"])["transitionStatus"] == "UpToDate" and m
        ),
        60,
        "KServe's model status UpToDate",
    )
    assert model["states"] == {"activeModelState": "Loaded", "targetModelState": "Loaded"}
    assert model["copies"] == {"failedCopies": 0, "totalCopies": 1}
    for type_ in ("PredictorReady", "PredictorRouteReady", "PredictorConfigurationReady", "IngressReady"):
        assert condition(isvc, type_)["status"] == "True", type_
    # The pod Knative's Revision made, run for real: our server, Knative's queue-proxy.
    [pod] = isvcs.predictor_pods("sentiment")
    assert pod.status.phase == "Running" and pod.spec.node_name.startswith("kwok-node-")
    statuses = {s.name: s for s in pod.status.container_statuses}
    assert {"kserve-container", "queue-proxy"} <= set(statuses)
    assert all(s.ready for s in statuses.values())

    answer = isvcs.post(
        f"sentiment.{ns}.{domain}", "/v1/models/sentiment:predict", {"instances": ["I am happy"]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["label"] in ("NEGATIVE", "POSITIVE")
    assert answer.headers[REVISION_HEADER] == "sentiment-predictor-00001"
    unknown = isvcs.post(f"nothing.{ns}.{domain}", "/v1/models/sentiment:predict", {"instances": ["x"]})
    assert unknown.status_code == 404
    isvcs.delete("sentiment")


def test_more_cpu_than_any_node_has_leaves_it_not_ready_with_the_schedulers_message(isvcs):
    cpu = {"cpu": "100", "memory": "1Gi"}
    isvcs.create_container("greedy", {"image": OTHER_IMAGE, "resources": {"requests": cpu, "limits": cpu}})
    [pod] = wait_for(lambda: isvcs.predictor_pods("greedy"), 120, "the greedy predictor's pod")
    scheduled = wait_for(
        lambda: isvcs.pod_condition(pod.metadata.name, "PodScheduled", "False"), 60, "the scheduler's verdict"
    )
    assert scheduled.reason == "Unschedulable"
    assert scheduled.message.startswith("0/3 nodes are available: 3 Insufficient cpu.")
    # Knative's Revision takes the scheduler's words; KServe passes them on in the predictor's conditions.
    isvc = isvcs.wait_condition("greedy", "PredictorConfigurationReady", "False")
    revision = isvcs.revision("greedy-predictor-00001")
    resources = condition(revision, "ResourcesAvailable")
    assert resources["status"] == "False"
    assert (resources["reason"], resources["message"]) == ("Unschedulable", scheduled.message)
    config = condition(isvc, "PredictorConfigurationReady")
    assert config["reason"] == "RevisionFailed"
    assert config["message"] == f'Revision "greedy-predictor-00001" failed with message: {scheduled.message}.'
    for type_ in ("PredictorReady", "Ready"):
        assert condition(isvc, type_) | {"lastTransitionTime": None} == {
            "type": type_,
            "status": "False",
            "reason": "RevisionMissing",
            "message": 'Configuration "greedy-predictor" does not have any ready Revision.',
            "lastTransitionTime": None,
        }
    assert isvc["status"]["modelStatus"]["transitionStatus"] == "InProgress"
    assert isvc["status"]["modelStatus"]["states"]["targetModelState"] == "Pending"
    assert [p.status.phase for p in isvcs.predictor_pods("greedy")] == ["Pending"]


def test_an_image_for_another_architecture_crash_loops_with_exec_format_error(isvcs):
    isvcs.create_container("wrongarch", {"image": ARM64_ONLY_IMAGE})
    isvc = isvcs.wait_condition("wrongarch", "PredictorConfigurationReady", "False")
    [pod] = isvcs.predictor_pods("wrongarch")
    container = next(c for c in pod.status.container_statuses if c.name == "kserve-container")
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert container.last_state.terminated.exit_code == 255
    assert container.last_state.terminated.message == "exec /usr/local/bin/python: exec format error"
    # Knative's Revision reports the container's last termination, KServe the Revision's failure.
    healthy = condition(isvcs.revision("wrongarch-predictor-00001"), "ContainerHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "ExitCode255")
    assert healthy["message"] == "Container failed with: exec /usr/local/bin/python: exec format error"
    assert condition(isvc, "PredictorConfigurationReady")["message"] == (
        'Revision "wrongarch-predictor-00001" failed with message: '
        "Container failed with: exec /usr/local/bin/python: exec format error."
    )
    assert condition(isvc, "Ready")["status"] == "False"
    failure = wait_for(
        lambda: (isvcs.get("wrongarch")["status"].get("modelStatus") or {}).get("lastFailureInfo"),
        60,
        "KServe's model failure info",
    )
    assert failure["reason"] == "ModelLoadFailed" and failure["exitCode"] == 255
    assert failure["message"] == "exec /usr/local/bin/python: exec format error"
    assert isvcs.get("wrongarch")["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"


def test_a_canary_splits_traffic_between_two_revisions_of_our_model_server_then_promotes(isvcs):
    tags = {"serving.kserve.io/enable-tag-routing": "true"}
    isvcs.create_container("canary", OUR_SERVER, annotations=tags)
    isvcs.wait_ready("canary")
    new_container = {"name": "kserve-container", **OUR_SERVER, "args": [*MODEL_ARGS, "--max_batch_size=8"]}
    isvcs.patch(
        "canary", {"spec": {"predictor": {"canaryTrafficPercent": 50, "containers": [new_container]}}}
    )
    predictor = isvcs.wait_ready("canary")["status"]["components"]["predictor"]
    assert predictor["latestReadyRevision"] == "canary-predictor-00002"
    assert predictor["latestRolledoutRevision"] == "canary-predictor-00001"
    assert sorted((t["tag"], t["revisionName"], t["percent"]) for t in predictor["traffic"]) == [
        ("latest", "canary-predictor-00002", 50),
        ("prev", "canary-predictor-00001", 50),
    ]
    ns, domain = isvcs.namespace, isvcs.cluster.domain

    def served_by(host: str) -> str:
        answer = isvcs.post(host, "/v1/models/sentiment:predict", {"instances": ["ok"]})
        assert answer.status_code == 200, answer.text
        return answer.headers[REVISION_HEADER]

    assert {served_by(f"canary.{ns}.{domain}") for _ in range(40)} == {
        "canary-predictor-00001",
        "canary-predictor-00002",
    }
    assert served_by(f"latest-canary-predictor.{ns}.{domain}") == "canary-predictor-00002"
    assert served_by(f"prev-canary-predictor.{ns}.{domain}") == "canary-predictor-00001"

    isvcs.patch("canary", {"spec": {"predictor": {"canaryTrafficPercent": None}}})

    def promoted():
        predictor = isvcs.get("canary")["status"]["components"]["predictor"]
        return [(t.get("tag"), t["revisionName"], t["percent"]) for t in predictor.get("traffic") or []] == [
            ("latest", "canary-predictor-00002", 100)
        ] and predictor

    predictor = wait_for(promoted, 120, "the canary promoted to 100%")
    assert predictor["previousRolledoutRevision"] == "canary-predictor-00001"
    assert predictor["latestRolledoutRevision"] == "canary-predictor-00002"
    assert {served_by(f"canary.{ns}.{domain}") for _ in range(10)} == {"canary-predictor-00002"}
    isvcs.delete("canary")


@pytest.fixture
def models_domain(isvcs):
    """config-domain gains `models.example.test` for Routes labelled domain-test=NAMESPACE; removed after."""
    domain = "models.example.test"
    selector = f"selector:\n  example.test/domain: {isvcs.namespace}\n"
    isvcs.core.patch_namespaced_config_map("config-domain", KNATIVE, {"data": {domain: selector}})
    yield domain
    isvcs.core.patch_namespaced_config_map("config-domain", KNATIVE, {"data": {domain: None}})


def test_knative_config_domain_sets_the_urls(isvcs, models_domain):
    labels = {"example.test/domain": isvcs.namespace}
    isvcs.create_container("named", OUR_SERVER, labels=labels)
    status = isvcs.wait_ready("named")["status"]
    host = f"named.{isvcs.namespace}.{models_domain}"
    assert status["url"] == f"http://{host}"
    assert (
        status["components"]["predictor"]["url"]
        == f"http://named-predictor.{isvcs.namespace}.{models_domain}"
    )
    answer = isvcs.post(host, "/v1/models/sentiment:predict", {"instances": ["routed by the new domain"]})
    assert answer.status_code == 200, answer.text
    isvcs.delete("named")


def test_knatives_webhook_rejects_a_config_domain_it_cannot_read(isvcs):
    with pytest.raises(client.ApiException) as rejected:
        isvcs.core.patch_namespaced_config_map(
            "config-domain", KNATIVE, {"data": {"broken.example.test": "selector: [not, a, map]"}}
        )
    assert rejected.value.status == 400
    message = json.loads(rejected.value.body)["message"]
    assert message.startswith('admission webhook "config.webhook.serving.knative.dev" denied the request: ')
    assert "cannot unmarshal array into Go struct field domainInternalConfig.selector" in message
    assert "broken.example.test" not in isvcs.core.read_namespaced_config_map("config-domain", KNATIVE).data


def test_a_model_format_picks_the_cluster_serving_runtime_with_storage_initializer(isvcs):
    model = {
        "modelFormat": {"name": "huggingface"},
        "storageUri": "s3://models/distilbert",
        "args": ["--model_name=hf"],
    }
    isvcs.create("hf", {"model": model})
    revision = isvcs.wait_ready("hf")["status"]["components"]["predictor"]["latestReadyRevision"]
    runtime = isvcs.custom.get_cluster_custom_object(
        GROUP, "v1alpha1", "clusterservingruntimes", "kserve-huggingfaceserver"
    )["spec"]["containers"][0]
    assert runtime["image"] == "kserve/huggingfaceserver:v0.14.1"
    assert runtime["args"] == ["--model_name={{.Name}}"]
    # KServe's controller merged the runtime's container with the model's args into the Knative Revision...
    deployment = client.AppsV1Api(isvcs.api).read_namespaced_deployment(
        f"{revision}-deployment", isvcs.namespace
    )
    template = deployment.spec.template.spec
    container = next(c for c in template.containers if c.name == "kserve-container")
    assert container.image == runtime["image"]
    assert container.args == ["--model_name=hf", "--model_name=hf"]
    # ...and KServe's pod mutator (webhook) added the storage-initializer to the pod itself.
    assert not template.init_containers
    [pod] = isvcs.predictor_pods("hf")
    assert (
        pod.metadata.annotations["internal.serving.kserve.io/storage-initializer-sourceuri"]
        == model["storageUri"]
    )
    assert [c.name for c in pod.spec.init_containers] == ["storage-initializer"]
    assert pod.spec.init_containers[0].image == "kserve/storage-initializer:v0.14.1"
    assert pod.spec.init_containers[0].args == ["s3://models/distilbert", "/mnt/models"]


def test_cert_manager_certificates_become_ready(isvcs):
    custom, namespace = isvcs.custom, isvcs.namespace
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "selfsigned"}}
    custom.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "issuers", {**issuer, "spec": {"selfSigned": {}}}
    )
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "serving-cert"},
        "spec": {
            "secretName": "serving-cert",
            "dnsNames": [f"webhook.{namespace}.svc"],
            "issuerRef": {"kind": "Issuer", "name": "selfsigned"},
        },
    }
    custom.create_namespaced_custom_object("cert-manager.io", "v1", namespace, "certificates", certificate)

    def ready(plural, name):
        obj = custom.get_namespaced_custom_object("cert-manager.io", "v1", namespace, plural, name)
        return condition(obj, "Ready").get("status") == "True" and obj

    wait_for(lambda: ready("issuers", "selfsigned"), 60, "Issuer Ready")
    wait_for(lambda: ready("certificates", "serving-cert"), 60, "Certificate Ready")
    secret = isvcs.core.read_namespaced_secret("serving-cert", namespace)
    assert secret.type == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt"} <= set(secret.data)
