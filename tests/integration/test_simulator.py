"""The simulator on the local control plane: InferenceService status derived from real predictor pods (real
scheduler, kwok), its failure modes, our model server run locally behind the Host-routing ingress with
traffic splits, Knative's domain, and the cert-manager / Knative objects it marks Ready."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import requests
import yaml
from kubernetes import client

from devcluster.ingress import REVISION_HEADER
from tests.cluster_plugin import wait_for
from tests.upstream import UPSTREAM_DIR, documents, platform_crds

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not UPSTREAM_DIR.is_dir(), reason=f"no upstream mirror at {UPSTREAM_DIR}"),
]

GROUP, VERSION = "serving.kserve.io", "v1beta1"
OUR_IMAGE = "registry.example.com/kserve-ansible-model:dev"
OTHER_IMAGE = "registry.example.com/echo-model:1.0"  # runs on any node; not served locally
ARM64_ONLY_IMAGE = "registry.example.com/echo-model:1.0-arm64"  # convention: -arm64 tag = arm64 only


@pytest.fixture(scope="module")
def cluster(local_cluster):
    local_cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=kserve-ansible-test",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(platform_crds()),
    )
    local_cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")
    return local_cluster


@pytest.fixture
def namespace(cluster):
    core = client.CoreV1Api(cluster.api_client())
    name = f"sim-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    custom = client.CustomObjectsApi(cluster.api_client())
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, "inferenceservices")
    core.delete_namespace(name)


class Isvcs:
    def __init__(self, cluster, namespace: str):
        self.cluster = cluster
        self.namespace = namespace
        self.api = cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def create(self, name: str, container: dict, **predictor) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"predictor": {"containers": [{"name": "kserve-container", **container}], **predictor}},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "inferenceservices", body)

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "inferenceservices", name
        )

    def patch(self, name: str, body: dict) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "inferenceservices",
            name,
            body,
            _content_type="application/merge-patch+json",
        )

    def condition(self, name: str, type_: str) -> dict:
        status = self.get(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})

    def wait_ready(self, name: str, timeout: float = 240) -> dict:
        def ready():
            isvc = self.get(name)
            status = isvc.get("status") or {}
            return (
                status.get("observedGeneration") == isvc["metadata"]["generation"]
                and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
                )
                and isvc
            )

        return wait_for(ready, timeout, f"InferenceService {name} Ready")

    def wait_condition(self, name: str, type_: str, status: str, timeout: float = 60) -> dict:
        return wait_for(
            lambda: self.condition(name, type_).get("status") == status and self.condition(name, type_),
            timeout,
            f"{name} {type_}={status}",
        )

    def predictor_pods(self, name: str) -> list:
        selector = f"serving.kserve.io/inferenceservice={name},component=predictor"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def post(self, host: str, path: str, body: dict) -> requests.Response:
        url = f"http://127.0.0.1:{self.cluster.ingress_port}{path}"
        return requests.post(url, json=body, headers={"Host": host}, timeout=60)


@pytest.fixture
def isvcs(cluster, namespace) -> Isvcs:
    return Isvcs(cluster, namespace)


def test_our_model_server_image_is_served_through_the_ingress_with_kserve_status(isvcs):
    isvcs.create(
        "sentiment", {"image": OUR_IMAGE, "args": ["--model_name=sentiment", "--model_dir=/mnt/models"]}
    )
    isvc = isvcs.wait_ready("sentiment")
    ns, domain = isvcs.namespace, isvcs.cluster.domain
    status = isvc["status"]
    assert status["url"] == f"http://sentiment.{ns}.{domain}"
    assert status["address"]["url"] == f"http://sentiment.{ns}.svc.cluster.local"
    predictor = status["components"]["predictor"]
    assert (
        predictor["latestCreatedRevision"] == predictor["latestReadyRevision"] == "sentiment-predictor-00001"
    )
    assert predictor["traffic"] == [
        {"revisionName": "sentiment-predictor-00001", "percent": 100, "latestRevision": True}
    ]
    assert status["modelStatus"]["transitionStatus"] == "UpToDate"
    assert status["modelStatus"]["states"] == {"activeModelState": "Loaded", "targetModelState": "Loaded"}
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    for type_ in (
        "PredictorReady",
        "PredictorRouteReady",
        "PredictorConfigurationReady",
        "IngressReady",
        "Ready",
    ):
        assert conditions[type_] == "True", type_
    pods = isvcs.predictor_pods("sentiment")
    assert [p.status.phase for p in pods] == ["Running"] and pods[0].spec.node_name.startswith("kwok-node-")

    answer = isvcs.post(
        f"sentiment.{ns}.{domain}", "/v1/models/sentiment:predict", {"instances": ["I am happy"]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["label"] in ("NEGATIVE", "POSITIVE")
    assert answer.headers[REVISION_HEADER] == "sentiment-predictor-00001"
    unknown = isvcs.post(f"nothing.{ns}.{domain}", "/v1/models/sentiment:predict", {"instances": ["x"]})
    assert unknown.status_code == 404


def test_more_cpu_than_any_node_has_leaves_it_not_ready_with_the_schedulers_message(isvcs):
    isvcs.create("greedy", {"image": OTHER_IMAGE, "resources": {"requests": {"cpu": "100", "memory": "1Gi"}}})
    config = isvcs.wait_condition("greedy", "PredictorConfigurationReady", "False")
    assert config["reason"] == "RevisionFailed"
    assert config["message"].startswith(
        'Revision "greedy-predictor-00001" failed with message: 0/3 nodes are available'
    )
    assert "3 Insufficient cpu." in config["message"]
    ready = isvcs.condition("greedy", "Ready")
    assert ready["status"] == "False"
    assert isvcs.condition("greedy", "PredictorReady")["reason"] == "RevisionMissing"
    pods = isvcs.predictor_pods("greedy")
    assert [p.status.phase for p in pods] == ["Pending"]
    events = isvcs.core.list_namespaced_event(
        isvcs.namespace, field_selector=f"involvedObject.name={pods[0].metadata.name},reason=FailedScheduling"
    ).items
    assert events and "0/3 nodes are available: 3 Insufficient cpu." in events[0].message


def test_an_image_for_another_architecture_crash_loops_with_exec_format_error(isvcs):
    isvcs.create("wrongarch", {"image": ARM64_ONLY_IMAGE})
    config = isvcs.wait_condition("wrongarch", "PredictorConfigurationReady", "False")
    assert config["message"] == (
        'Revision "wrongarch-predictor-00001" failed with message: '
        "Container failed with: exec /usr/local/bin/python: exec format error."
    )
    failure = isvcs.get("wrongarch")["status"]["modelStatus"]
    assert failure["transitionStatus"] == "BlockedByFailedLoad"
    assert failure["lastFailureInfo"]["exitCode"] == 255
    assert failure["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    pod = isvcs.predictor_pods("wrongarch")[0]
    container = next(c for c in pod.status.container_statuses if c.name == "kserve-container")
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert container.last_state.terminated.exit_code == 255
    assert "exec format error" in container.last_state.terminated.message


def test_a_canary_splits_traffic_between_two_local_revisions_then_promotes(isvcs):
    args = ["--model_name=sentiment", "--model_dir=/mnt/models"]
    isvcs.create("canary", {"image": OUR_IMAGE, "args": args})
    isvcs.wait_ready("canary")
    new_container = {"name": "kserve-container", "image": OUR_IMAGE, "args": [*args, "--max_batch_size=8"]}
    isvcs.patch(
        "canary", {"spec": {"predictor": {"canaryTrafficPercent": 50, "containers": [new_container]}}}
    )
    predictor = isvcs.wait_ready("canary")["status"]["components"]["predictor"]
    assert predictor["latestReadyRevision"] == "canary-predictor-00002"
    assert [(t["tag"], t["revisionName"], t["percent"]) for t in predictor["traffic"]] == [
        ("prev", "canary-predictor-00001", 50),
        ("latest", "canary-predictor-00002", 50),
    ]
    ns, domain = isvcs.namespace, isvcs.cluster.domain
    served = Counter(
        isvcs.post(f"canary.{ns}.{domain}", "/v1/models/sentiment:predict", {"instances": ["ok"]}).headers[
            REVISION_HEADER
        ]
        for _ in range(40)
    )
    assert set(served) == {"canary-predictor-00001", "canary-predictor-00002"}
    tagged = isvcs.post(
        f"latest-canary-predictor.{ns}.{domain}", "/v1/models/sentiment:predict", {"instances": ["a"]}
    )
    assert tagged.headers[REVISION_HEADER] == "canary-predictor-00002"

    isvcs.patch("canary", {"spec": {"predictor": {"canaryTrafficPercent": None}}})

    def promoted():
        predictor = isvcs.get("canary")["status"]["components"]["predictor"]
        return (
            predictor.get("traffic")
            == [{"revisionName": "canary-predictor-00002", "percent": 100, "latestRevision": True}]
            and predictor
        )

    predictor = wait_for(promoted, 60, "the canary promoted to 100%")
    assert predictor["previousRolledoutRevision"] == "canary-predictor-00001"
    assert predictor["latestRolledoutRevision"] == "canary-predictor-00002"
    wait_for(lambda: not isvcs.predictor_pods("canary")[1:], 60, "the old revision's pod gone")


def test_knative_config_domain_sets_the_urls(isvcs):
    core = isvcs.core
    try:
        core.create_namespace({"metadata": {"name": "knative-serving"}})
    except client.ApiException as error:
        assert error.status == 409
    existing = None
    try:
        existing = core.read_namespaced_config_map("config-domain", "knative-serving")
        core.patch_namespaced_config_map(
            "config-domain", "knative-serving", {"data": {"models.example.test": ""}}
        )
    except client.ApiException as error:
        assert error.status == 404
        core.create_namespaced_config_map(
            "knative-serving", {"metadata": {"name": "config-domain"}, "data": {"models.example.test": ""}}
        )
    try:
        isvcs.create("named", {"image": OTHER_IMAGE})
        status = isvcs.wait_ready("named")["status"]
        assert status["url"] == f"http://named.{isvcs.namespace}.models.example.test"
        answer = isvcs.post(f"named.{isvcs.namespace}.models.example.test", "/v1/models/named:predict", {})
        assert answer.status_code == 503  # routed, but only our model server image runs locally
    finally:
        if existing is None:
            core.delete_namespaced_config_map("config-domain", "knative-serving")
        else:
            core.replace_namespaced_config_map("config-domain", "knative-serving", existing)


def test_a_model_format_picks_the_cluster_serving_runtime_with_storage_initializer(isvcs):
    runtimes = documents("kserve/0.14.1/kserve-cluster-resources.yaml", "ClusterServingRuntime")
    isvcs.cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=kserve-ansible-test",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(runtimes),
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": "hf", "namespace": isvcs.namespace},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "storageUri": "s3://models/distilbert",
                    "args": ["--model_name=hf"],
                }
            }
        },
    }
    isvcs.custom.create_namespaced_custom_object(GROUP, VERSION, isvcs.namespace, "inferenceservices", body)
    status = isvcs.wait_ready("hf")["status"]
    assert status["clusterServingRuntimeName"] == "kserve-huggingfaceserver"
    pod = isvcs.predictor_pods("hf")[0]
    container = next(c for c in pod.spec.containers if c.name == "kserve-container")
    assert container.image == "kserve/huggingfaceserver:v0.14.1"
    assert "--model_name=hf" in container.args
    assert [c.name for c in pod.spec.init_containers] == ["storage-initializer"]
    assert pod.spec.init_containers[0].args == ["s3://models/distilbert", "/mnt/models"]


def test_cert_manager_certificates_and_knative_services_become_ready(cluster, namespace):
    custom = client.CustomObjectsApi(cluster.api_client())
    custom.create_namespaced_custom_object(
        "cert-manager.io",
        "v1",
        namespace,
        "issuers",
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": {"name": "selfsigned"},
            "spec": {"selfSigned": {}},
        },
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
    ksvc = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hello"},
        "spec": {"template": {"spec": {"containers": [{"image": OTHER_IMAGE}]}}},
    }
    custom.create_namespaced_custom_object("serving.knative.dev", "v1", namespace, "services", ksvc)

    def ready(group, plural, name):
        obj = custom.get_namespaced_custom_object(group, "v1", namespace, plural, name)
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and obj

    wait_for(lambda: ready("cert-manager.io", "issuers", "selfsigned"), 60, "Issuer Ready")
    wait_for(lambda: ready("cert-manager.io", "certificates", "serving-cert"), 60, "Certificate Ready")
    secret = client.CoreV1Api(cluster.api_client()).read_namespaced_secret("serving-cert", namespace)
    assert secret.type == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt"} <= set(secret.data)
    service = wait_for(lambda: ready("serving.knative.dev", "services", "hello"), 60, "Knative Service Ready")
    assert service["status"]["url"] == f"http://hello.{namespace}.{cluster.domain}"
