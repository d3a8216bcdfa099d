"""Status the other platform controllers would write, for objects whose controllers cannot run here:

- cert-manager: Certificates Ready (with their TLS Secret, signed by the simulator's own CA), Issuers and
  ClusterIssuers Ready, and the cainjector's job: `cert-manager.io/inject-ca-from` fills caBundle, and so does
  `cert-manager.io/inject-ca-from-secret` (from the Secret's `ca.crt`, as cainjector does only for a Secret
  annotated `cert-manager.io/allow-direct-injection: "true"`; the admission stand-in writes it);
- a cloud load balancer (as MetalLB or cloud-provider-kind would): Services of type LoadBalancer get the
  address 127.0.0.1, where the simulator's ingress listens (on its own port, not the Service's).
"""

from __future__ import annotations

import base64
import datetime
import logging
import threading
from pathlib import Path

from kubernetes.client.rest import ApiException

from devcluster import conditions as c
from devcluster import pki

log = logging.getLogger("simulator.platforms")
MERGE = "application/merge-patch+json"
INJECT_ANNOTATION = "cert-manager.io/inject-ca-from"
INJECT_FROM_SECRET_ANNOTATION = "cert-manager.io/inject-ca-from-secret"
ALLOW_DIRECT_INJECTION = "cert-manager.io/allow-direct-injection"
# No Secret informer here: while the Secret an inject-ca-from-secret names is missing, look again this often.
SECRET_RECHECK_SECONDS = 5.0

# (group, version, plural, namespaced)
CERTIFICATES = ("cert-manager.io", "v1", "certificates", True)
ISSUERS = ("cert-manager.io", "v1", "issuers", True)
CLUSTER_ISSUERS = ("cert-manager.io", "v1", "clusterissuers", False)
LOAD_BALANCER_IP = "127.0.0.1"


class PlatformStatus:
    def __init__(self, sim):
        self.sim = sim
        self._ca = pki.CertificateAuthority(Path(sim.state_dir) / "pki" / "simulator")
        self._lock = threading.Lock()

    # ----- generic status writing ----------------------------------------------------------------------
    def _patch_status(self, kind: tuple, obj: dict, status: dict) -> None:
        group, version, plural, namespaced = kind
        meta = obj["metadata"]
        old = obj.get("status") or {}
        if {k: v for k, v in old.items() if k != "conditions"} == {
            k: v for k, v in status.items() if k != "conditions"
        } and c.same_conditions(old.get("conditions"), status.get("conditions")):
            return
        status = {
            **status,
            "conditions": c.with_transition_times(status["conditions"], old.get("conditions")),
        }
        body = {"status": status}
        try:
            if namespaced:
                self.sim.custom.patch_namespaced_custom_object_status(
                    group, version, meta["namespace"], plural, meta["name"], body, _content_type=MERGE
                )
            else:
                self.sim.custom.patch_cluster_custom_object_status(
                    group, version, plural, meta["name"], body, _content_type=MERGE
                )
        except ApiException as error:
            if error.status != 404:
                log.warning("status of %s %s: %s", plural, meta["name"], error.reason)

    # ----- the cloud's load balancer -------------------------------------------------------------------
    def load_balancer(self, service: dict) -> None:
        if (service.get("spec") or {}).get("type") != "LoadBalancer":
            return
        if ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            return
        meta = service["metadata"]
        body = {"status": {"loadBalancer": {"ingress": [{"ip": LOAD_BALANCER_IP, "ipMode": "VIP"}]}}}
        try:
            self.sim.core.patch_namespaced_service_status(meta["name"], meta["namespace"], body)
            log.info("service %s/%s: load balancer %s", meta["namespace"], meta["name"], LOAD_BALANCER_IP)
        except ApiException as error:
            if error.status != 404:
                raise

    # ----- cert-manager --------------------------------------------------------------------------------
    def issuer(self, kind: tuple, obj: dict) -> None:
        ready = c.condition("Ready", c.TRUE, "IsReady", "")
        ready["observedGeneration"] = obj["metadata"].get("generation", 1)
        self._patch_status(kind, obj, {"conditions": [ready]})

    def certificate(self, obj: dict) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        secret_name = spec.get("secretName")
        if secret_name:
            self._ensure_tls_secret(meta["namespace"], secret_name, spec)
        now = datetime.datetime.now(datetime.UTC)
        ready = c.condition("Ready", c.TRUE, "Ready", "Certificate is up to date and has not expired")
        ready["observedGeneration"] = meta.get("generation", 1)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        old = obj.get("status") or {}
        status = {
            "conditions": [ready],
            "notBefore": old.get("notBefore") or now.strftime(fmt),
            "notAfter": old.get("notAfter") or (now + pki.VALIDITY).strftime(fmt),
            "renewalTime": old.get("renewalTime") or (now + pki.VALIDITY * 2 / 3).strftime(fmt),
            "revision": old.get("revision") or 1,
        }
        self._patch_status(CERTIFICATES, obj, status)

    def _ensure_tls_secret(self, namespace: str, name: str, spec: dict) -> None:
        try:
            self.sim.core.read_namespaced_secret(name, namespace)
            return
        except ApiException as error:
            if error.status != 404:
                return
        with self._lock:
            dns = tuple(spec.get("dnsNames") or ()) or (spec.get("commonName") or name,)
            crt, key = self._ca.issue(
                f"{namespace}-{name}", spec.get("commonName") or dns[0], dns_names=dns, server=True
            )
        data = {
            "tls.crt": crt.read_bytes(),
            "tls.key": key.read_bytes(),
            "ca.crt": self._ca.cert_pem,
        }
        body = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"cert-manager.io/certificate-name": name},
            },
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            self.sim.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status != 409:
                log.warning("secret %s/%s: %s", namespace, name, error.reason)

    def _bundle_to_inject(self, kind: str, obj: dict) -> str | None:
        """The caBundle cainjector would inject: the simulator's CA for inject-ca-from (it signs every
        Certificate), the Secret's ca.crt for inject-ca-from-secret (None while it is missing)."""
        annotations = obj["metadata"].get("annotations") or {}
        if "/" in annotations.get(INJECT_ANNOTATION, ""):
            return base64.b64encode(self._ca.cert_pem).decode()
        source = annotations.get(INJECT_FROM_SECRET_ANNOTATION, "")
        if "/" not in source:
            return None
        namespace, name = source.split("/", 1)
        try:
            secret = self.sim.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            secret = None
        if secret is None or not (secret.data or {}).get("ca.crt"):
            self.sim.queue.add((kind, "", obj["metadata"]["name"]), SECRET_RECHECK_SECONDS)
            return None
        if (secret.metadata.annotations or {}).get(ALLOW_DIRECT_INJECTION) != "true":
            log.warning("not injecting Secret %s: it is not annotated %s", source, ALLOW_DIRECT_INJECTION)
            return None
        return secret.data["ca.crt"]  # base64 of the PEM, as caBundle wants it

    def inject_ca(self, kind: str, obj: dict) -> None:
        """cainjector: caBundle of a webhook configuration or CRD annotated with inject-ca-from(-secret)."""
        bundle = self._bundle_to_inject(kind, obj)
        if bundle is None:
            return
        name = obj["metadata"]["name"]
        try:
            if kind == "crd":
                conversion = (obj.get("spec") or {}).get("conversion") or {}
                webhook = conversion.get("webhook")
                if not webhook or (webhook.get("clientConfig") or {}).get("caBundle") == bundle:
                    return
                patch = {"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": bundle}}}}}
                self.sim.extensions.patch_custom_resource_definition(name, patch)
                return
            webhooks = obj.get("webhooks") or []
            if all((w.get("clientConfig") or {}).get("caBundle") == bundle for w in webhooks):
                return
            patch = [
                {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
                for i in range(len(webhooks))
            ]
            if kind == "validating":
                self.sim.admission.patch_validating_webhook_configuration(name, patch)
            else:
                self.sim.admission.patch_mutating_webhook_configuration(name, patch)
        except ApiException as error:
            log.warning("caBundle of %s: %s", name, error.reason)
