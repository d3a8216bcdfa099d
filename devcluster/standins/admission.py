"""Admission stand-in: answers the admission webhooks of a pod whose webhook server cannot run here
(cert-manager's webhook, net-istio's webhook, istiod), allowing every request unchanged.

The pod runner starts it as `python -m devcluster.standins.admission` in the pod's network namespace, in
place of the image's entrypoint, with:
- KSA_POD: the pod object as JSON (metadata, spec, status with podIP);
- KSA_CONTAINER: the name of the container it stands for;
- KSA_STANDIN_KUBECONFIG: a kubeconfig (admin) whose server is reachable from the pod's network namespace.

From the Services selecting the pod and the webhook configurations naming those Services it works out which
container ports serve admission (HTTPS, a certificate for the Service's names and the pod IP, signed by a CA
of its own) and which answer the container's probes. It publishes the CA as the real server does: in the
Secret named by `cert-manager.io/inject-ca-from-secret` (for the cainjector), else by patching `caBundle`
of the configuration's webhooks; every RESYNC_SECONDS it looks again (an apply of the upstream manifest
resets caBundle; configurations and Services may come later than the pod).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pathlib
import signal
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from devcluster import pki

log = logging.getLogger("admission-standin")

RESYNC_SECONDS = 10.0
# Until a configuration names the pod's Services (they are often applied with the pod), look every second.
EARLY_RESYNC_SECONDS, EARLY_PERIOD_SECONDS = 1.0, 30.0
INJECT_FROM_SECRET = "cert-manager.io/inject-ca-from-secret"
# A configuration whose CA the cainjector takes from a cert-manager Certificate: the server serves that
# Certificate's key pair, mounted where controller-runtime's webhook server reads it (e.g. the modelmesh
# controller that KServe's Helm chart installs); nothing is published, the cainjector stand-in injects it.
INJECT_FROM_CERTIFICATE = "cert-manager.io/inject-ca-from"
MOUNTED_SERVING_CERT = pathlib.Path("/tmp/k8s-webhook-server/serving-certs")
ALLOW_DIRECT_INJECTION = "cert-manager.io/allow-direct-injection"
KINDS = {"mutating": "MutatingWebhookConfiguration", "validating": "ValidatingWebhookConfiguration"}
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
DEFAULT_SERVICE_PORT = 443


# ----- what the pod serves (pure) ----------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookRoute:
    """One webhook of a configuration that reaches this container."""

    kind: str  # "mutating" | "validating"
    configuration: str
    index: int
    webhook: str
    service: str  # NAME (in the pod's namespace)
    service_port: int
    container_port: int


@dataclass(frozen=True)
class Listener:
    port: int  # the container port
    tls: bool
    admission: bool
    probe_paths: frozenset[str]  # GET on these answers 200


@dataclass(frozen=True)
class Publication:
    """Where the CA goes for one configuration: a Secret (for the cainjector), else the webhooks' caBundle."""

    kind: str
    configuration: str
    indices: tuple[int, ...]
    secret: tuple[str, str] | None  # (namespace, name)


@dataclass(frozen=True)
class Plan:
    routes: tuple[WebhookRoute, ...]
    listeners: tuple[Listener, ...]
    publications: tuple[Publication, ...]
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]


def selects(selector: dict | None, labels: dict) -> bool:
    """A Service selector (equality only) selects these labels; an empty selector selects no pod."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def pod_services(pod: dict, services: list[dict]) -> list[dict]:
    namespace, labels = pod["metadata"]["namespace"], pod["metadata"].get("labels") or {}
    return [
        service
        for service in services
        if service["metadata"].get("namespace") == namespace
        and selects((service.get("spec") or {}).get("selector"), labels)
    ]


def container_named(pod: dict, name: str) -> dict:
    for container in pod["spec"]["containers"]:
        if container["name"] == name:
            return container
    raise KeyError(f"pod {pod['metadata']['name']} has no container {name!r}")


def _ports(container: dict) -> list[dict]:
    return container.get("ports") or []


def probe_port(container: dict, port: int | str) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    return next((p["containerPort"] for p in _ports(container) if p.get("name") == port), None)


def service_target(service: dict, port: int) -> int | str | None:
    """The targetPort behind a Service port (the port itself when targetPort is not set)."""
    for entry in (service.get("spec") or {}).get("ports") or []:
        if entry.get("port") == port:
            return entry.get("targetPort", entry["port"])
    return None


def container_target(pod: dict, container: dict, target: int | str) -> int | None:
    """The port of `container` a targetPort reaches, None when it reaches another container (or none).

    A name is a container port's name; a number belongs to the container declaring it, or to the first
    container when none does (declaring ports is optional)."""
    containers = pod["spec"]["containers"]
    if isinstance(target, str) and not target.isdigit():
        for candidate in containers:
            for p in _ports(candidate):
                if p.get("name") == target:
                    return p["containerPort"] if candidate is container else None
        return None
    number = int(target)
    owners = [c for c in containers if any(p.get("containerPort") == number for p in _ports(c))]
    return number if container in owners or (not owners and container is containers[0]) else None


def webhook_routes(
    pod: dict, container_name: str, services: list[dict], configurations: list[tuple[str, dict]]
) -> tuple[WebhookRoute, ...]:
    """The webhooks of `configurations` ([(kind, object)]) whose Service reaches this container."""
    container = container_named(pod, container_name)
    namespace = pod["metadata"]["namespace"]
    selecting = {s["metadata"]["name"]: s for s in pod_services(pod, services)}
    routes = []
    for kind, configuration in configurations:
        for index, hook in enumerate(configuration.get("webhooks") or []):
            ref = (hook.get("clientConfig") or {}).get("service")
            if not ref or ref.get("namespace") != namespace or ref.get("name") not in selecting:
                continue
            service_port = ref.get("port", DEFAULT_SERVICE_PORT)
            target = service_target(selecting[ref["name"]], service_port)
            port = None if target is None else container_target(pod, container, target)
            if port is not None:
                routes.append(
                    WebhookRoute(
                        kind,
                        configuration["metadata"]["name"],
                        index,
                        hook["name"],
                        ref["name"],
                        service_port,
                        port,
                    )
                )
    return tuple(routes)


def probes(container: dict) -> list[tuple[int, bool, str | None]]:
    """(port, tls, path or None for a bare listener) of each httpGet / tcpSocket probe of the container."""
    found = []
    for key in PROBES:
        probe = container.get(key) or {}
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = probe_port(container, get["port"])
            tls = (get.get("scheme") or "HTTP").upper() == "HTTPS"
            path = urlsplit(get.get("path") or "/").path or "/"
            if port is not None:
                found.append((port, tls, path))
        elif "tcpSocket" in probe:
            port = probe_port(container, probe["tcpSocket"]["port"])
            if port is not None:
                found.append((port, False, None))
    return found


def listeners(routes: tuple[WebhookRoute, ...], container: dict) -> tuple[Listener, ...]:
    """One listener per port: HTTPS where admission is served or a probe says HTTPS, else plain HTTP."""
    ports: dict[int, dict] = {}

    def entry(port: int) -> dict:
        return ports.setdefault(port, {"tls": False, "admission": False, "paths": set()})

    for route in routes:
        entry(route.container_port).update(tls=True, admission=True)
    for port, tls, path in probes(container):
        e = entry(port)
        e["tls"] = e["tls"] or tls
        if path:
            e["paths"].add(path)
    return tuple(
        Listener(port, e["tls"], e["admission"], frozenset(e["paths"])) for port, e in sorted(ports.items())
    )


def publications(
    routes: tuple[WebhookRoute, ...], configurations: list[tuple[str, dict]]
) -> tuple[Publication, ...]:
    by_name = {(kind, c["metadata"]["name"]): c for kind, c in configurations}
    indices: dict[tuple[str, str], list[int]] = {}
    for route in routes:
        indices.setdefault((route.kind, route.configuration), []).append(route.index)
    result = []
    for (kind, name), found in indices.items():
        annotations = by_name[(kind, name)]["metadata"].get("annotations") or {}
        if annotations.get(INJECT_FROM_CERTIFICATE):
            continue
        source = annotations.get(INJECT_FROM_SECRET, "")
        secret = tuple(source.split("/", 1)) if "/" in source else None
        result.append(Publication(kind, name, tuple(found), secret))
    return tuple(result)


def service_dns_names(services: list[str], namespace: str) -> tuple[str, ...]:
    return tuple(
        name
        for service in sorted(set(services))
        for name in (
            f"{service}.{namespace}.svc",
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc.cluster.local",
        )
    )


def make_plan(
    pod: dict, container_name: str, services: list[dict], configurations: list[tuple[str, dict]]
) -> Plan:
    """Everything this container serves and publishes, from the pod, the Services and the configurations."""
    routes = webhook_routes(pod, container_name, services, configurations)
    namespace = pod["metadata"]["namespace"]
    pod_ip = (pod.get("status") or {}).get("podIP")
    return Plan(
        routes=routes,
        listeners=listeners(routes, container_named(pod, container_name)),
        publications=publications(routes, configurations),
        dns_names=service_dns_names([r.service for r in routes], namespace),
        ips=(pod_ip,) if pod_ip else (),
    )


def admission_response(review: dict) -> dict:
    """The answer to an AdmissionReview (v1 or v1beta1, the request's own version): allowed, no patch."""
    request = review.get("request") or {}
    return {
        "apiVersion": review.get("apiVersion") or "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request.get("uid", ""), "allowed": True},
    }


def describe(publication: Publication, plan: Plan, namespace: str) -> str:
    """The log line for one configuration this container stands for."""
    routes = [
        r for r in plan.routes if (r.kind, r.configuration) == (publication.kind, publication.configuration)
    ]
    paths = {f"Service {namespace}/{r.service}:{r.service_port} -> port {r.container_port}" for r in routes}
    via = ", ".join(sorted(paths))
    where = (
        f"CA in Secret {'/'.join(publication.secret)} for the cainjector"
        if publication.secret
        else "CA patched into caBundle"
    )
    hooks = ", ".join(r.webhook for r in routes)
    return f"{KINDS[publication.kind]} {publication.configuration} ({hooks}) via {via}: allow all; {where}"


# ----- certificates -------------------------------------------------------------------------------------
class Certificates:
    """CAs and serving certificates in a private directory (the process's own, removed at exit)."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory

    def own_ca(self) -> pki.CertificateAuthority:
        return pki.CertificateAuthority(self.directory / "ca-own")

    def ca_from_pem(self, cert_pem: bytes, key_pem: bytes) -> pki.CertificateAuthority:
        """A CA given as PEM (a Secret's), checked to load."""
        folder = self.directory / f"ca-{hashlib.sha256(cert_pem).hexdigest()[:16]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ca.key").write_bytes(key_pem)
        (folder / "ca.key").chmod(0o600)
        (folder / "ca.crt").write_bytes(cert_pem)
        return pki.CertificateAuthority(folder)

    @staticmethod
    def key_pem(ca: pki.CertificateAuthority) -> bytes:
        return ca.key_path.read_bytes()

    @staticmethod
    def server_context(ca: pki.CertificateAuthority, dns_names: tuple[str, ...], ips: tuple[str, ...]):
        """A TLS server context with a certificate for these names, issued by `ca`."""
        names = dns_names or ("localhost",)
        digest = hashlib.sha256(json.dumps([names, ips]).encode()).hexdigest()[:16]
        cert, key = ca.issue(f"serving-{digest}", names[0], dns_names=names, ips=ips, server=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(cert, key)
        return context


# ----- the servers ----------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _Server

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if urlsplit(self.path).path in self.server.listener.probe_paths:
            self._answer(200, b"ok")
        else:
            self._answer(404, b"not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.server.listener.admission:
            self._answer(404, b"not found")
            return
        try:
            review = json.loads(body)
        except ValueError:
            self._answer(400, b"not an AdmissionReview")
            return
        answer = json.dumps(admission_response(review)).encode()
        self._answer(200, answer, "application/json")

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], listener: Listener, context: ssl.SSLContext | None):
        self.listener, self.context = listener, context
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        """TLS handshake in the request's own thread, so a slow client never holds up the others."""
        if not self.listener.tls:
            super().finish_request(request, client_address)
            return
        request.settimeout(_Handler.timeout)
        tls = self.context.wrap_socket(request, server_side=True)
        try:
            super().finish_request(tls, client_address)
        finally:
            self.shutdown_request(tls)

    def handle_error(self, request, client_address):
        log.debug("connection from %s failed: %s", client_address, sys.exc_info()[1])


class Listeners:
    """The running servers, one per Listener, on `host` at port_map.get(port, port) (0: any free port)."""

    def __init__(self, host: str = "0.0.0.0", port_map: dict[int, int] | None = None):
        self.host, self.port_map = host, dict(port_map or {})
        self.servers: dict[int, _Server] = {}

    def apply(self, wanted: tuple[Listener, ...], context: ssl.SSLContext | None) -> None:
        for listener in wanted:
            server = self.servers.get(listener.port)
            if server is not None and server.listener == listener:
                server.context = context
                continue
            if server is not None:
                self._stop(listener.port)
            self._start(listener, context)
        for port in set(self.servers) - {w.port for w in wanted}:
            self._stop(port)

    def bound_port(self, port: int) -> int:
        return self.servers[port].server_address[1]

    def _start(self, listener: Listener, context: ssl.SSLContext | None) -> None:
        if listener.tls and context is None:
            return
        address = (self.host, self.port_map.get(listener.port, listener.port))
        try:
            server = _Server(address, listener, context)
        except OSError as error:
            log.error("cannot listen on %s:%d (retrying): %s", *address, error)
            return
        self.servers[listener.port] = server
        threading.Thread(target=server.serve_forever, name=f"port-{listener.port}", daemon=True).start()
        what = "admission" if listener.admission else "probes " + ", ".join(sorted(listener.probe_paths))
        scheme = "https" if listener.tls else "http"
        log.info("listening on %s:%d (%s, %s)", self.host, server.server_address[1], scheme, what.strip())

    def _stop(self, port: int) -> None:
        server = self.servers.pop(port)
        server.shutdown()
        server.server_close()

    def close(self) -> None:
        for port in list(self.servers):
            self._stop(port)


# ----- the API server ---------------------------------------------------------------------------------------
class Cluster:
    """The few API calls the stand-in makes, answering plain dicts as the API server sends them."""

    def __init__(self, api_client):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)

    @staticmethod
    def _json(response) -> dict:
        return json.loads(response.data)

    def services(self, namespace: str) -> list[dict]:
        return self._json(self.core.list_namespaced_service(namespace, _preload_content=False))["items"]

    def configurations(self) -> list[tuple[str, dict]]:
        mutating = self.admission.list_mutating_webhook_configuration(_preload_content=False)
        validating = self.admission.list_validating_webhook_configuration(_preload_content=False)
        return [("mutating", c) for c in self._json(mutating)["items"]] + [
            ("validating", c) for c in self._json(validating)["items"]
        ]

    def secret(self, namespace: str, name: str) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self._json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def write_secret(self, body: dict, exists: bool) -> None:
        meta = body["metadata"]
        if exists:
            self.core.replace_namespaced_secret(meta["name"], meta["namespace"], body)
        else:
            self.core.create_namespaced_secret(meta["namespace"], body)

    def patch_configuration(self, kind: str, name: str, patch: list[dict]) -> None:
        if kind == "mutating":
            self.admission.patch_mutating_webhook_configuration(name, patch)
        else:
            self.admission.patch_validating_webhook_configuration(name, patch)


def ca_secret(namespace: str, name: str, ca_pem: bytes, key_pem: bytes) -> dict:
    """The CA Secret as cert-manager's webhook keeps it (tls.crt is the CA itself), open to the cainjector."""
    data = {"ca.crt": ca_pem, "tls.crt": ca_pem, "tls.key": key_pem}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": {ALLOW_DIRECT_INJECTION: "true"}},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def ca_bundle_patch(configuration: dict, indices: tuple[int, ...], bundle: str) -> list[dict]:
    """JSON patch setting caBundle of the webhooks at `indices` that lack it (each guarded by its name)."""
    patch = []
    webhooks = configuration.get("webhooks") or []
    for i in indices:
        if (webhooks[i].get("clientConfig") or {}).get("caBundle") != bundle:
            patch.append({"op": "test", "path": f"/webhooks/{i}/name", "value": webhooks[i]["name"]})
            patch.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle})
    return patch


# ----- the process ------------------------------------------------------------------------------------------
class StandIn:
    def __init__(
        self,
        pod: dict,
        container_name: str,
        cluster: Cluster,
        workdir: pathlib.Path,
        host: str = "0.0.0.0",
        port_map: dict[int, int] | None = None,
    ):
        self.pod, self.container_name, self.cluster = pod, container_name, cluster
        self.namespace = pod["metadata"]["namespace"]
        self.certificates = Certificates(workdir)
        self.listeners = Listeners(host, port_map)
        self.services: list[dict] = []
        self.configurations: list[tuple[str, dict]] = []
        self.plan = make_plan(pod, container_name, [], [])
        self.ca: pki.CertificateAuthority | None = None
        self._context: ssl.SSLContext | None = None
        self._context_key: tuple | None = None
        self.published: set[tuple[str, str]] = set()

    def sync(self) -> None:
        """Look at the Services and configurations again, serve what they need, (re)publish the CA.

        While the API server cannot be reached it keeps serving what it knew."""
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self.services = self.cluster.services(self.namespace)
            self.configurations = self.cluster.configurations()
            self.plan = make_plan(self.pod, self.container_name, self.services, self.configurations)
            self.ca = self._ca()
            fresh = True
        except (ApiException, HTTPError) as error:
            log.warning("API server: %s (serving what was known)", getattr(error, "reason", None) or error)
            fresh = False
        self.ca = self.ca or self.certificates.own_ca()
        self.listeners.apply(self.plan.listeners, self._server_context())
        if fresh:
            try:
                self._publish(self.ca)
            except (ApiException, HTTPError) as error:
                log.warning("publishing the CA: %s (retrying)", getattr(error, "reason", None) or error)

    def _server_context(self) -> ssl.SSLContext | None:
        """The TLS context for the current CA and names (made again only when they change)."""
        if not any(listener.tls for listener in self.plan.listeners):
            return None
        mounted = MOUNTED_SERVING_CERT / "tls.crt", MOUNTED_SERVING_CERT / "tls.key"
        if all(path.exists() for path in mounted) and not self.plan.publications:
            key = tuple(path.read_bytes() for path in mounted)
            if self._context_key != key:
                self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                self._context.set_alpn_protocols(["http/1.1"])
                self._context.load_cert_chain(*mounted)
                self._context_key = key
            return self._context
        key = (self.ca.cert_pem, self.plan.dns_names, self.plan.ips)
        if self._context_key != key:
            self._context = self.certificates.server_context(self.ca, self.plan.dns_names, self.plan.ips)
            self._context_key = key
        return self._context

    def _ca(self) -> pki.CertificateAuthority:
        """The Secret's CA when a configuration takes it from one (written when missing), else our own."""
        names = sorted({p.secret for p in self.plan.publications if p.secret})
        if not names:
            return self.certificates.own_ca()
        secrets = {name: self.cluster.secret(*name) for name in names}
        ca = self._ca_of(secrets[names[0]]) or self.certificates.own_ca()
        bundle = base64.b64encode(ca.cert_pem).decode()
        for (namespace, name), secret in secrets.items():
            data = (secret or {}).get("data") or {}
            annotations = (secret or {}).get("metadata", {}).get("annotations") or {}
            allowed = annotations.get(ALLOW_DIRECT_INJECTION) == "true"
            if self._ca_of(secret) is None or data["ca.crt"] != bundle or not allowed:
                body = ca_secret(namespace, name, ca.cert_pem, self.certificates.key_pem(ca))
                self.cluster.write_secret(body, exists=secret is not None)
                log.info("wrote the CA to Secret %s/%s", namespace, name)
        return ca

    def _ca_of(self, secret: dict | None) -> pki.CertificateAuthority | None:
        data = (secret or {}).get("data") or {}
        if not data.get("ca.crt") or not data.get("tls.key"):
            return None
        try:
            return self.certificates.ca_from_pem(
                base64.b64decode(data["ca.crt"]), base64.b64decode(data["tls.key"])
            )
        except ValueError:
            return None

    def _publish(self, ca: pki.CertificateAuthority) -> None:
        bundle = base64.b64encode(ca.cert_pem).decode()
        by_name = {(kind, c["metadata"]["name"]): c for kind, c in self.configurations}
        for publication in self.plan.publications:
            key = (publication.kind, publication.configuration)
            if not publication.secret:
                patch = ca_bundle_patch(by_name[key], publication.indices, bundle)
                if patch:
                    self.cluster.patch_configuration(publication.kind, publication.configuration, patch)
                    if key in self.published:
                        log.info("caBundle of %s %s re-asserted", KINDS[publication.kind], key[1])
            if key not in self.published:
                log.info("standing in for %s", describe(publication, self.plan, self.namespace))
                self.published.add(key)

    def close(self) -> None:
        self.listeners.close()


def main() -> None:
    from kubernetes import config as kube_config

    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s admission-standin %(message)s"
    )
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    pod = json.loads(os.environ["KSA_POD"])
    container_name = os.environ["KSA_CONTAINER"]
    api = kube_config.new_client_from_config(config_file=os.environ["KSA_STANDIN_KUBECONFIG"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    image = container_named(pod, container_name)["image"]
    log.info(
        "admission stand-in for container %s (%s) of pod %s/%s",
        container_name,
        image,
        pod["metadata"]["namespace"],
        pod["metadata"]["name"],
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ksa-admission-") as workdir:
        standin = StandIn(pod, container_name, Cluster(api), pathlib.Path(workdir))
        try:
            while not stop.is_set():
                standin.sync()
                early = not standin.plan.routes and time.monotonic() - started < EARLY_PERIOD_SECONDS
                stop.wait(EARLY_RESYNC_SECONDS if early else RESYNC_SECONDS)
        finally:
            standin.close()
    log.info("stopped")


if __name__ == "__main__":
    main()
