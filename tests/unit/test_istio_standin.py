"""The net-istio / Istio stand-in: KIngress status, and requests routed by the objects Knative Serving 1.16
and KServe 0.14.1 write (shapes as their controllers produce them: Knative's route reconciler's KIngress,
KServe's ingress reconciler's VirtualService), to pod endpoints from EndpointSlices."""

import json
import random
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devcluster import istio_standin as istio
from devcluster.ingress import Ingress

NS, DOMAIN = "kserve-test", "example.com"
PREDICTOR = "sklearn-iris-predictor"
LOCAL_GW_SVC = "knative-local-gateway.istio-system.svc.cluster.local"


def split(revision, percent, port=80):
    return {
        "serviceName": revision,
        "serviceNamespace": NS,
        "servicePort": port,
        "percent": percent,
        "appendHeaders": {"Knative-Serving-Namespace": NS, "Knative-Serving-Revision": revision},
    }


def kingress(splits, name=PREDICTOR, annotations=None, extra_paths=()):
    """A KIngress as Knative's route reconciler writes it: a ClusterLocal and an ExternalIP rule."""
    paths = [*extra_paths, {"splits": splits}]
    return {
        "apiVersion": "networking.internal.knative.dev/v1alpha1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": NS,
            "generation": 3,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"serving.knative.dev/route": name, "serving.knative.dev/routeNamespace": NS},
            "annotations": {"networking.knative.dev/ingress.class": istio.ISTIO_CLASS, **(annotations or {})},
        },
        "spec": {
            "httpOption": "Enabled",
            "rules": [
                {
                    "hosts": [f"{name}.{NS}.svc.cluster.local"],
                    "visibility": "ClusterLocal",
                    "http": {"paths": paths},
                },
                {"hosts": [f"{name}.{NS}.{DOMAIN}"], "visibility": "ExternalIP", "http": {"paths": paths}},
            ],
        },
    }


def kserve_virtual_service(isvc="sklearn-iris", backend=PREDICTOR, explainer=None):
    """The VirtualService KServe 0.14.1's ingress reconciler writes for a ready InferenceService."""

    def matches(uri=None):
        extra = {"uri": {"regex": uri}} if uri else {}
        return [
            {
                **extra,
                "authority": {"regex": rf"^{isvc}\.{NS}(\.svc(\.cluster\.local)?)?(?::\d{{1,5}})?$"},
                "gateways": [istio.LOCAL_GATEWAY, "mesh"],
            },
            {
                **extra,
                "authority": {"regex": rf"^{isvc}\.{NS}\.example\.com(?::\d{{1,5}})?$"},
                "gateways": [istio.INGRESS_GATEWAY],
            },
        ]

    def route(host, uri=None):
        return {
            "match": matches(uri),
            "headers": {"request": {"set": {"Host": f"{host}.{NS}.svc.cluster.local"}}},
            "route": [{"destination": {"host": LOCAL_GW_SVC, "port": {"number": 80}}, "weight": 100}],
        }

    http = [route(explainer, r"^/v1/models/[\w-]+:explain$")] if explainer else []
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": isvc, "namespace": NS, "creationTimestamp": "2026-12-01T10:00:05Z"},
        "spec": {
            "gateways": [istio.LOCAL_GATEWAY, "mesh", istio.INGRESS_GATEWAY],
            "hosts": [f"{isvc}.{NS}.svc.cluster.local", f"{isvc}.{NS}.{DOMAIN}"],
            "http": [*http, route(backend)],
        },
    }


def revision_service(revision, namespace=NS):
    """A revision's public Service as Knative's SKS reconciler makes it (no selector)."""
    return {
        "metadata": {"name": revision, "namespace": namespace},
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8012},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8112},
            ],
        },
    }


def endpoint_slice(service, addresses, ready=True, namespace=NS, port=8012):
    return {
        "metadata": {
            "name": f"{service}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}, {"name": "https", "port": 8112}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
    }


def route(table, cluster, host, path="/v1/models/sklearn-iris:predict", headers=None, seed=1):
    return istio.dispatch(table, cluster, path, {"host": host, **(headers or {})}, random.Random(seed))


@pytest.fixture
def served():
    """One revision with one ready pod, its KIngress and KServe's VirtualService."""
    table = istio.RoutingTable.build(
        [kingress([split(f"{PREDICTOR}-00001", 100)])], [kserve_virtual_service()]
    )
    cluster = istio.ClusterView.of(
        [revision_service(f"{PREDICTOR}-00001")], [endpoint_slice(f"{PREDICTOR}-00001", ["10.244.0.5"])]
    )
    return table, cluster


# ----- KIngress status ------------------------------------------------------------------------------------
def test_kingress_status_is_what_net_istio_writes():
    status = istio.kingress_status(kingress([split("r-00001", 100)]))
    assert status == {
        "observedGeneration": 3,
        "conditions": [
            {"type": "LoadBalancerReady", "status": "True"},
            {"type": "NetworkConfigured", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "publicLoadBalancer": {
            "ingress": [{"domainInternal": "istio-ingressgateway.istio-system.svc.cluster.local"}]
        },
        "privateLoadBalancer": {"ingress": [{"domainInternal": LOCAL_GW_SVC}]},
    }


def test_only_kingresses_of_the_istio_class_are_ours():
    kourier = {"networking.knative.dev/ingress.class": "kourier.ingress.networking.knative.dev"}
    unannotated = kingress([split("r-00001", 100)])
    del unannotated["metadata"]["annotations"]["networking.knative.dev/ingress.class"]
    assert istio.is_istio_class(kingress([], annotations=kourier)) is False
    assert istio.is_istio_class(unannotated, istio.default_ingress_class(None)) is True
    network = {"data": {"ingress-class": "kourier.ingress.networking.knative.dev"}}
    assert istio.is_istio_class(unannotated, istio.default_ingress_class(network)) is False
    table = istio.RoutingTable.build([kingress([split("r-00001", 100)], annotations=kourier)], [])
    assert table.virtual_hosts == ()


# ----- KIngress routing -----------------------------------------------------------------------------------
def test_external_host_goes_to_a_ready_pod_with_knatives_headers(served):
    table, cluster = served
    answer = route(table, cluster, f"{PREDICTOR}.{NS}.{DOMAIN}")
    assert isinstance(answer, istio.Forward)
    assert (answer.address, answer.port, answer.path) == (
        "10.244.0.5",
        8012,
        "/v1/models/sklearn-iris:predict",
    )
    assert answer.headers["knative-serving-revision"] == f"{PREDICTOR}-00001"
    assert answer.headers["knative-serving-namespace"] == NS
    assert answer.headers["host"] == f"{PREDICTOR}.{NS}.{DOMAIN}"
    assert answer.hops == (f"{istio.INGRESS_GATEWAY}: kingress {NS}/{PREDICTOR}",)


@pytest.mark.parametrize(
    "host",
    [
        f"{PREDICTOR}.{NS}.svc.cluster.local",
        f"{PREDICTOR}.{NS}.svc.cluster.local:80",
        f"{PREDICTOR}.{NS}.svc",
        f"{PREDICTOR}.{NS}",
    ],
)
def test_cluster_local_hosts_go_through_the_local_gateway(served, host):
    answer = route(*served, host)
    assert isinstance(answer, istio.Forward) and answer.address == "10.244.0.5"
    assert answer.hops == (f"{istio.LOCAL_GATEWAY}: kingress {NS}/{PREDICTOR}",)


def test_unknown_host_is_404_like_istio(served):
    assert route(*served, "nobody.kserve-test.example.com") == istio.Reject(404, b"")
    assert route(*served, f"{PREDICTOR}.other-namespace.{DOMAIN}") == istio.Reject(404, b"")


def test_no_ready_endpoint_is_503_no_healthy_upstream(served):
    table, _ = served
    revision = f"{PREDICTOR}-00001"
    not_ready = istio.ClusterView.of(
        [revision_service(revision)], [endpoint_slice(revision, ["10.244.0.5"], False)]
    )
    no_slice = istio.ClusterView.of([revision_service(revision)], [])
    no_service = istio.ClusterView.of([], [endpoint_slice(revision, ["10.244.0.5"])])
    for cluster in (not_ready, no_slice, no_service):
        assert route(table, cluster, f"{PREDICTOR}.{NS}.{DOMAIN}") == istio.Reject(
            503, b"no healthy upstream"
        )


def test_splits_are_drawn_per_request_by_percent():
    table = istio.RoutingTable.build([kingress([split("r-00001", 80), split("r-00002", 20)], name="r")], [])
    cluster = istio.ClusterView.of(
        [revision_service("r-00001"), revision_service("r-00002")],
        [endpoint_slice("r-00001", ["10.244.0.1"]), endpoint_slice("r-00002", ["10.244.0.2"])],
    )
    rng = random.Random(7)
    seen = Counter(
        istio.dispatch(table, cluster, "/", {"host": f"r.{NS}.{DOMAIN}"}, rng).headers[
            "knative-serving-revision"
        ]
        for _ in range(1000)
    )
    assert set(seen) == {"r-00001", "r-00002"}
    assert 700 < seen["r-00001"] < 900, seen


def test_path_and_header_matches_rule_headers_and_rewrite_host():
    tagged = {
        "headers": {"Knative-Serving-Tag": {"exact": "canary"}},
        "appendHeaders": {"Knative-Serving-Tag": "canary"},
        "splits": [split("r-00002", 100)],
    }
    mapped = {
        "path": "/mapped/",
        "rewriteHost": f"r.{NS}.svc.cluster.local",
        "splits": [split("r-00003", 100)],
    }
    table = istio.RoutingTable.build(
        [kingress([split("r-00001", 100)], name="r", extra_paths=[tagged, mapped])], []
    )
    cluster = istio.ClusterView.of(
        [revision_service(f"r-0000{i}") for i in (1, 2, 3)],
        [endpoint_slice(f"r-0000{i}", [f"10.244.0.{i}"]) for i in (1, 2, 3)],
    )
    host = f"r.{NS}.{DOMAIN}"
    plain = route(table, cluster, host, "/")
    canary = route(table, cluster, host, "/", {"knative-serving-tag": "canary"})
    other_tag = route(table, cluster, host, "/", {"knative-serving-tag": "blue"})
    by_path = route(table, cluster, host, "/mapped/x?y=1")
    assert [a.address for a in (plain, canary, other_tag, by_path)] == [
        "10.244.0.1",
        "10.244.0.2",
        "10.244.0.1",
        "10.244.0.3",
    ]
    assert canary.headers["knative-serving-tag"] == "canary"
    assert by_path.headers["host"] == f"r.{NS}.svc.cluster.local" and by_path.path == "/mapped/x?y=1"


def test_service_port_by_name_and_the_slice_port_of_that_name():
    by_name = split("r-00001", 100, port="https")
    table = istio.RoutingTable.build([kingress([by_name], name="r")], [])
    cluster = istio.ClusterView.of([revision_service("r-00001")], [endpoint_slice("r-00001", ["10.244.0.1"])])
    assert route(table, cluster, f"r.{NS}.{DOMAIN}").port == 8112


# ----- KServe's VirtualService ----------------------------------------------------------------------------
def test_inference_service_host_goes_through_the_local_gateway_to_the_predictor(served):
    answer = route(*served, f"sklearn-iris.{NS}.{DOMAIN}")
    assert isinstance(answer, istio.Forward) and (answer.address, answer.port) == ("10.244.0.5", 8012)
    assert answer.headers["host"] == f"{PREDICTOR}.{NS}.svc.cluster.local"
    assert answer.headers["knative-serving-revision"] == f"{PREDICTOR}-00001"
    assert answer.hops == (
        f"{istio.INGRESS_GATEWAY}: virtualservice {NS}/sklearn-iris",
        f"{istio.LOCAL_GATEWAY}: kingress {NS}/{PREDICTOR}",
    )


def test_inference_service_internal_address(served):
    answer = route(*served, f"sklearn-iris.{NS}.svc.cluster.local")
    assert answer.hops == (
        f"{istio.LOCAL_GATEWAY}: virtualservice {NS}/sklearn-iris",
        f"{istio.LOCAL_GATEWAY}: kingress {NS}/{PREDICTOR}",
    )


def test_explain_requests_go_to_the_explainer_by_uri_regex():
    explainer = "sklearn-iris-explainer"
    table = istio.RoutingTable.build(
        [
            kingress([split(f"{PREDICTOR}-00001", 100)]),
            kingress([split(f"{explainer}-00001", 100)], name=explainer),
        ],
        [kserve_virtual_service(explainer=explainer)],
    )
    cluster = istio.ClusterView.of(
        [revision_service(f"{PREDICTOR}-00001"), revision_service(f"{explainer}-00001")],
        [
            endpoint_slice(f"{PREDICTOR}-00001", ["10.244.0.5"]),
            endpoint_slice(f"{explainer}-00001", ["10.244.0.9"]),
        ],
    )
    host = f"sklearn-iris.{NS}.{DOMAIN}"
    assert route(table, cluster, host, "/v1/models/sklearn-iris:explain?x=1").address == "10.244.0.9"
    assert route(table, cluster, host, "/v1/models/sklearn-iris:predict").address == "10.244.0.5"


def test_kserve_external_name_service_leads_to_the_local_gateway(served):
    """KServe also makes a Service NAME of type ExternalName pointing at the local gateway."""
    table, cluster = served
    external = {
        "metadata": {"name": "sklearn-iris", "namespace": NS},
        "spec": {"type": "ExternalName", "externalName": LOCAL_GW_SVC},
    }
    cluster.services[(NS, "sklearn-iris")] = external
    vs = {
        "metadata": {"name": "via-external-name", "namespace": NS},
        "spec": {
            "hosts": ["alias.example.com"],
            "gateways": [istio.INGRESS_GATEWAY],
            "http": [
                {
                    "headers": {"request": {"set": {"Host": f"{PREDICTOR}.{NS}.svc.cluster.local"}}},
                    "route": [{"destination": {"host": "sklearn-iris"}}],
                }
            ],
        },
    }
    both = istio.RoutingTable((*table.virtual_hosts, istio.virtual_service_routes(vs)))
    assert route(both, cluster, "alias.example.com").address == "10.244.0.5"


def test_routes_table_describes_the_sources(served):
    described = served[0].describe()
    assert [v["source"] for v in described] == [
        f"kingress {NS}/{PREDICTOR}",
        f"virtualservice {NS}/sklearn-iris",
    ]
    assert f"{PREDICTOR}.{NS}" in described[0]["hosts"]
    assert described[1]["http"][0]["set"] == {"Host": f"{PREDICTOR}.{NS}.svc.cluster.local"}


# ----- the HTTP ingress -----------------------------------------------------------------------------------
class Echo(BaseHTTPRequestHandler):
    """A pod's server: answers with what it received."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        seen = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(),
        }
        data = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    revision = f"{PREDICTOR}-00001"
    slices = [endpoint_slice(revision, ["127.0.0.1"], port=backend.server_port)]
    ingress = Ingress(0, lambda: istio.ClusterView.of([revision_service(revision)], slices))
    ingress.set_istio_table(
        istio.RoutingTable.build([kingress([split(revision, 100)])], [kserve_virtual_service()])
    )
    ingress.serve_forever()
    yield ingress.server.server_address[1], slices
    ingress.server.shutdown()
    ingress.server.server_close()
    backend.shutdown()
    backend.server_close()


def call(port, host, path="/v1/models/sklearn-iris:predict", body=b'{"instances": [[1, 2]]}'):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def test_http_ingress_proxies_to_the_pod_endpoint(servers):
    port, _ = servers
    status, headers, body = call(port, f"sklearn-iris.{NS}.{DOMAIN}")
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/v1/models/sklearn-iris:predict" and seen["body"] == '{"instances": [[1, 2]]}'
    assert seen["headers"]["host"] == f"{PREDICTOR}.{NS}.svc.cluster.local"
    assert seen["headers"]["knative-serving-revision"] == f"{PREDICTOR}-00001"
    assert headers["x-simulator-revision"] == f"{PREDICTOR}-00001"
    assert int(headers["x-envoy-upstream-service-time"]) >= 0
    assert headers["server"] == "istio-envoy"


def test_http_ingress_404_503_ready_and_routes(servers):
    port, slices = servers
    assert call(port, "unknown.example.com")[0] == 404
    slices[0]["endpoints"][0]["conditions"]["ready"] = False
    assert call(port, f"{PREDICTOR}.{NS}.{DOMAIN}")[::2] == (503, b"no healthy upstream")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/.simulator/ready", timeout=10) as response:
        assert response.read() == b"ok\n"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/.simulator/routes", timeout=10) as response:
        routes = json.loads(response.read())
    assert [v["source"] for v in routes["istio"]] == [
        f"kingress {NS}/{PREDICTOR}",
        f"virtualservice {NS}/sklearn-iris",
    ]


def test_short_gateway_names_are_in_the_virtual_services_namespace(served):
    table, cluster = served

    def vs(namespace):
        return {
            "metadata": {"name": "short", "namespace": namespace},
            "spec": {
                "hosts": ["short.example.com"],
                "gateways": ["knative-ingress-gateway"],
                "http": [
                    {
                        "route": [
                            {
                                "destination": {
                                    "host": f"{PREDICTOR}-00001.{NS}.svc.cluster.local",
                                    "port": {"number": 80},
                                }
                            }
                        ]
                    }
                ],
            },
        }

    for namespace, expected in (("knative-serving", 8012), (NS, None)):
        both = istio.RoutingTable((*table.virtual_hosts, istio.virtual_service_routes(vs(namespace))))
        answer = route(both, cluster, "short.example.com")
        assert getattr(answer, "port", None) == expected, answer
