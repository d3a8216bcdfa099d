"""The admission stand-in (devcluster/standins/admission.py) for the webhook servers that cannot run here:
what it serves, read from the upstream manifests as installed, and a real AdmissionReview over TLS."""

from __future__ import annotations

import base64
import copy
import functools
import http.client
import json
import ssl
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from kubernetes import client as kube_client

from devcluster import pki
from devcluster.platform_status import PlatformStatus
from devcluster.simulator import WorkQueue
from devcluster.standins import admission
from tests.upstream import UPSTREAM_DIR, default_release_path, documents

POD_IP = "10.244.1.7"


class ServiceConnection(http.client.HTTPSConnection):
    """HTTPS to an endpoint's address, checking the certificate for the Service's name, as kube-apiserver
    does when it calls a webhook Service (<service>.<namespace>.svc)."""

    def __init__(self, port: int, server_name: str, cafile: str):
        super().__init__("127.0.0.1", port, timeout=10)
        self.server_name, self.tls = server_name, ssl.create_default_context(cafile=cafile)

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)


KINDS_READ = ("Deployment", "Service", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


@functools.cache
def _parsed(component: str, version_variable: str, filename: str) -> tuple[dict, ...]:
    path = str(default_release_path(component, version_variable, filename).relative_to(UPSTREAM_DIR))
    return tuple(d for d in documents(path) if d["kind"] in KINDS_READ)


def manifest(component: str, version_variable: str, filename: str) -> list[dict]:
    """The Deployments, Services and webhook configurations of an upstream manifest (a fresh copy)."""
    return copy.deepcopy(list(_parsed(component, version_variable, filename)))


def cert_manager() -> list[dict]:
    return manifest("cert-manager", "cert_manager_version", "cert-manager.yaml")


def net_istio() -> list[dict]:
    return manifest("net-istio", "istio_version", "net-istio.yaml")


def istio() -> list[dict]:
    return manifest("net-istio", "istio_version", "istio.yaml")


def pod_of(docs: list[dict], deployment: str) -> dict:
    """The pod a Deployment of the manifest makes (its template's labels and spec, with a pod IP)."""
    (found,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment]
    template = found["spec"]["template"]
    return {
        "metadata": {
            "name": f"{deployment}-6d4b9c-x2x7q",
            "namespace": found["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
        "status": {"podIP": POD_IP},
    }


def services(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] == "Service"]


def configurations(docs: list[dict]) -> list[tuple[str, dict]]:
    kinds = {"MutatingWebhookConfiguration": "mutating", "ValidatingWebhookConfiguration": "validating"}
    return [(kinds[d["kind"]], d) for d in docs if d["kind"] in kinds]


def plan_for(docs: list[dict], deployment: str) -> admission.Plan:
    pod = pod_of(docs, deployment)
    container = pod["spec"]["containers"][0]["name"]
    return admission.make_plan(pod, container, services(docs), configurations(docs))


def test_cert_manager_webhook_serves_admission_on_its_https_port_and_its_probes_on_healthcheck():
    plan = plan_for(cert_manager(), "cert-manager-webhook")
    assert plan.listeners == (
        admission.Listener(6080, tls=False, admission=False, probe_paths=frozenset({"/healthz", "/livez"})),
        admission.Listener(10250, tls=True, admission=True, probe_paths=frozenset()),
    )
    assert sorted((p.kind, p.configuration, p.indices, p.secret) for p in plan.publications) == [
        ("mutating", "cert-manager-webhook", (0,), ("cert-manager", "cert-manager-webhook-ca")),
        ("validating", "cert-manager-webhook", (0,), ("cert-manager", "cert-manager-webhook-ca")),
    ]
    assert plan.dns_names[0] == "cert-manager-webhook.cert-manager.svc"
    assert "cert-manager-webhook.cert-manager.svc.cluster.local" in plan.dns_names
    assert plan.ips == (POD_IP,)


def test_net_istio_webhook_serves_admission_and_its_https_probe_on_one_port_and_patches_its_caBundle():
    plan = plan_for(net_istio(), "net-istio-webhook")
    # metrics and profiling ports are the Service's too, but no webhook points at them
    assert plan.listeners == (
        admission.Listener(8443, tls=True, admission=True, probe_paths=frozenset({"/"})),
    )
    assert sorted((p.kind, p.configuration, p.indices, p.secret) for p in plan.publications) == [
        ("mutating", "webhook.istio.networking.internal.knative.dev", (0,), None),
        ("validating", "config.webhook.istio.networking.internal.knative.dev", (0,), None),
    ]


def test_istiod_serves_admission_on_15017_behind_service_port_443_and_readiness_on_8080():
    plan = plan_for(istio(), "istiod")
    assert plan.listeners == (
        admission.Listener(8080, tls=False, admission=False, probe_paths=frozenset({"/ready"})),
        admission.Listener(15017, tls=True, admission=True, probe_paths=frozenset()),
    )
    assert sorted((p.kind, p.configuration, p.indices, p.secret) for p in plan.publications) == [
        ("mutating", "istio-sidecar-injector", (0, 1, 2, 3), None),
        ("validating", "istio-validator-istio-system", (0,), None),
    ]
    assert {r.service for r in plan.routes} == {"istiod"}


def test_a_pod_no_webhook_service_selects_serves_only_its_probes():
    plan = plan_for(cert_manager(), "cert-manager")  # the controller, same namespace as the webhook
    assert plan.routes == () and plan.publications == ()
    assert all(not listener.admission for listener in plan.listeners)


def test_the_log_line_names_the_configuration_its_service_and_where_the_ca_goes():
    docs = cert_manager()
    plan = plan_for(docs, "cert-manager-webhook")
    mutating = next(p for p in plan.publications if p.kind == "mutating")
    assert admission.describe(mutating, plan, "cert-manager") == (
        "MutatingWebhookConfiguration cert-manager-webhook (webhook.cert-manager.io) via "
        "Service cert-manager/cert-manager-webhook:443 -> port 10250: allow all; "
        "CA in Secret cert-manager/cert-manager-webhook-ca for the cainjector"
    )


def test_caBundle_is_patched_only_on_the_webhooks_that_lack_it():
    (injector,) = [c for _, c in configurations(istio()) if c["metadata"]["name"] == "istio-sidecar-injector"]
    injector["webhooks"][1]["clientConfig"]["caBundle"] = "QUJD"
    patch = admission.ca_bundle_patch(injector, (0, 1), "QUJD")
    assert patch == [
        {"op": "test", "path": "/webhooks/0/name", "value": injector["webhooks"][0]["name"]},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "QUJD"},
    ]


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_every_review_is_allowed_unchanged_in_the_requests_version(version):
    review = {"apiVersion": version, "kind": "AdmissionReview", "request": {"uid": "705ab4f5"}}
    assert admission.admission_response(review) == {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5", "allowed": True},
    }


def test_a_real_admission_review_over_tls_verified_by_the_published_ca(tmp_path):
    plan = plan_for(cert_manager(), "cert-manager-webhook")
    certificates = admission.Certificates(tmp_path)
    ca = certificates.own_ca()
    context = certificates.server_context(ca, plan.dns_names, plan.ips)
    listeners = admission.Listeners("127.0.0.1", {10250: 0, 6080: 0})
    listeners.apply(plan.listeners, context)
    try:
        connection = ServiceConnection(
            listeners.bound_port(10250), "cert-manager-webhook.cert-manager.svc", str(ca.cert_path)
        )
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "0df28fbd-5f5f-4ab2-9d1b-4b0b6d7c9a10", "operation": "CREATE", "object": {}},
        }
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/validate?timeout=10s", json.dumps(review), headers)
        answer = connection.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["response"] == {
            "uid": "0df28fbd-5f5f-4ab2-9d1b-4b0b6d7c9a10",
            "allowed": True,
        }
        probe = http.client.HTTPConnection("127.0.0.1", listeners.bound_port(6080), timeout=10)
        probe.request("GET", "/healthz")
        assert probe.getresponse().status == 200
    finally:
        listeners.close()


def test_the_serving_certificate_is_not_trusted_without_the_ca(tmp_path):
    plan = plan_for(net_istio(), "net-istio-webhook")
    certificates = admission.Certificates(tmp_path)
    context = certificates.server_context(certificates.own_ca(), plan.dns_names, plan.ips)
    listeners = admission.Listeners("127.0.0.1", {8443: 0})
    listeners.apply(plan.listeners, context)
    try:
        other_ca = pki.CertificateAuthority(tmp_path / "other")
        connection = ServiceConnection(
            listeners.bound_port(8443), "net-istio-webhook.knative-serving.svc", str(other_ca.cert_path)
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            connection.request("GET", "/")
    finally:
        listeners.close()


# ----- the stand-in against an API server --------------------------------------------------------------
class FakeApiServer(ThreadingHTTPServer):
    """The few REST paths the stand-in uses (list, get, create, replace, JSON patch), objects held in memory
    by their path: a stand-in for kube-apiserver, which cannot run in a unit test."""

    COLLECTIONS = ("services", "secrets", "mutatingwebhookconfigurations", "validatingwebhookconfigurations")

    def __init__(self, objects: list[dict]):
        self.objects = {self.path_of(o): copy.deepcopy(o) for o in objects}
        super().__init__(("127.0.0.1", 0), FakeApiHandler)

    @staticmethod
    def path_of(obj: dict) -> str:
        plural = obj["kind"].lower() + "s"
        meta = obj["metadata"]
        if obj["kind"].endswith("WebhookConfiguration"):
            return f"/apis/admissionregistration.k8s.io/v1/{plural}/{meta['name']}"
        return f"/api/v1/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


class FakeApiHandler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def _not_found(self) -> None:
        self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def do_GET(self):
        path = urlsplit(self.path).path
        if path in self.server.objects:
            self._send(200, self.server.objects[path])
            return
        if path.rsplit("/", 1)[-1] not in self.server.COLLECTIONS:
            self._not_found()
            return
        items = [o for p, o in self.server.objects.items() if p.rsplit("/", 1)[0] == path]
        self._send(200, {"items": items})

    def do_POST(self):
        body = self._body()
        self.server.objects[f"{urlsplit(self.path).path}/{body['metadata']['name']}"] = body
        self._send(201, body)

    def do_PUT(self):
        path = urlsplit(self.path).path
        if path not in self.server.objects:
            self._not_found()
            return
        self.server.objects[path] = self._body()
        self._send(200, self.server.objects[path])

    def do_PATCH(self):
        path = urlsplit(self.path).path
        assert self.headers["Content-Type"] == "application/json-patch+json"
        obj = copy.deepcopy(self.server.objects[path])
        for op in self._body():
            *parents, last = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
            target = functools.reduce(lambda node, key: node[key], parents, obj)
            if op["op"] == "test" and target[last] != op["value"]:
                self._send(422, {"kind": "Status", "code": 422, "reason": "Invalid"})
                return
            if op["op"] == "add":
                target[last] = op["value"]
        self.server.objects[path] = obj
        self._send(200, obj)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server():
    servers = []

    def start(docs: list[dict]) -> FakeApiServer:
        kinds = ("Service", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        server = FakeApiServer([d for d in docs if d["kind"] in kinds])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def cluster_of(server: FakeApiServer) -> admission.Cluster:
    configuration = kube_client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    return admission.Cluster(kube_client.ApiClient(configuration))


def review_over_tls(port: int, server_name: str, ca_pem: bytes, tmp_path) -> dict:
    cafile = tmp_path / f"trusted-{port}.crt"
    cafile.write_bytes(ca_pem)
    connection = ServiceConnection(port, server_name, str(cafile))
    review = {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u-1"}}
    connection.request("POST", "/", json.dumps(review), {"Content-Type": "application/json"})
    return json.loads(connection.getresponse().read())


def test_net_istio_stand_in_patches_its_caBundle_and_reasserts_it_after_a_reapply(api_server, tmp_path):
    docs = net_istio()
    server = api_server(docs)
    pod = pod_of(docs, "net-istio-webhook")
    standin = admission.StandIn(pod, "webhook", cluster_of(server), tmp_path, "127.0.0.1", {8443: 0})
    try:
        standin.sync()
        paths = [FakeApiServer.path_of(c) for _, c in configurations(docs)]
        bundles = {server.objects[p]["webhooks"][0]["clientConfig"].get("caBundle") for p in paths}
        assert bundles == {base64.b64encode(standin.ca.cert_pem).decode()}
        answer = review_over_tls(
            standin.listeners.bound_port(8443),
            "net-istio-webhook.knative-serving.svc",
            base64.b64decode(bundles.pop()),
            tmp_path,
        )
        assert answer["response"] == {"uid": "u-1", "allowed": True}

        # `kubectl apply` of the upstream manifest again: the configuration loses its caBundle
        validating = next(c for k, c in configurations(docs) if k == "validating")
        server.objects[FakeApiServer.path_of(validating)] = copy.deepcopy(validating)
        standin.sync()
        webhook = server.objects[FakeApiServer.path_of(validating)]["webhooks"][0]
        assert webhook["clientConfig"]["caBundle"] == base64.b64encode(standin.ca.cert_pem).decode()
    finally:
        standin.close()


def test_cert_manager_stand_in_keeps_its_ca_in_the_secret_the_cainjector_reads(api_server, tmp_path):
    docs = cert_manager()
    server = api_server(docs)
    pod = pod_of(docs, "cert-manager-webhook")
    port_map = {10250: 0, 6080: 0}
    first = admission.StandIn(
        pod, "cert-manager-webhook", cluster_of(server), tmp_path / "1", "127.0.0.1", port_map
    )
    try:
        first.sync()
    finally:
        first.close()
    secret = server.objects["/api/v1/namespaces/cert-manager/secrets/cert-manager-webhook-ca"]
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"] == {"cert-manager.io/allow-direct-injection": "true"}
    assert secret["data"]["ca.crt"] == secret["data"]["tls.crt"]
    # no caBundle patch: injecting it is the cainjector's job
    assert all("caBundle" not in c["webhooks"][0]["clientConfig"] for _, c in configurations(docs))

    # a restarted stand-in serves with the CA already published
    again = admission.StandIn(
        pod, "cert-manager-webhook", cluster_of(server), tmp_path / "2", "127.0.0.1", port_map
    )
    try:
        again.sync()
        answer = review_over_tls(
            again.listeners.bound_port(10250),
            "cert-manager-webhook.cert-manager.svc",
            base64.b64decode(secret["data"]["ca.crt"]),
            tmp_path,
        )
        assert answer["response"] == {"uid": "u-1", "allowed": True}
    finally:
        again.close()


def test_the_cainjector_stand_in_injects_the_secret_the_webhook_stand_in_wrote(api_server, tmp_path):
    """cert-manager's chain here: the admission stand-in writes cert-manager-webhook-ca, the simulator's
    cainjector copies its ca.crt into caBundle, and that caBundle verifies the stand-in's certificate."""
    docs = cert_manager()
    server = api_server(docs)
    api = cluster_of(server)
    simulator = types.SimpleNamespace(
        state_dir=str(tmp_path / "simulator"), core=api.core, admission=api.admission, queue=WorkQueue()
    )
    cainjector = PlatformStatus(simulator)
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/cert-manager-webhook"

    cainjector.inject_ca("validating", server.objects[path])  # the Secret is not there yet
    assert "caBundle" not in server.objects[path]["webhooks"][0]["clientConfig"]

    pod = pod_of(docs, "cert-manager-webhook")
    port_map = {10250: 0, 6080: 0}
    standin = admission.StandIn(pod, "cert-manager-webhook", api, tmp_path / "standin", "127.0.0.1", port_map)
    try:
        standin.sync()
        cainjector.inject_ca("validating", server.objects[path])
        bundle = server.objects[path]["webhooks"][0]["clientConfig"]["caBundle"]
        answer = review_over_tls(
            standin.listeners.bound_port(10250),
            "cert-manager-webhook.cert-manager.svc",
            base64.b64decode(bundle),
            tmp_path,
        )
        assert answer["response"] == {"uid": "u-1", "allowed": True}
    finally:
        standin.close()
