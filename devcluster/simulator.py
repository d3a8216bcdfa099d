"""The simulator: one process that plays the platform parts which cannot run on the local control plane,
so the automation and its tests see what they would see on a real cluster (README "The simulator"):

- cert-manager: Certificates issued (TLS Secrets signed by the simulator's CA), Issuers and ClusterIssuers
  Ready, and cainjector (inject-ca-from, inject-ca-from-secret) — platform_status.py;
- Istio and net-istio: KIngress status and one ingress port routing by Host header to pod endpoints —
  istio_standin.py, ingress.py;
- a cloud load balancer: Services of type LoadBalancer get an address — platform_status.py;
- a fake kubelet for the pods kwok runs: images built for another architecture crash — kubelet.py.

The Knative Serving and KServe controllers and webhooks are the real ones, run by the pod runner; nothing
here writes InferenceService, Knative Service, Route, Configuration or Revision status.

    python -m devcluster.simulator --kubeconfig K --ingress-port P [--state-dir DIR]

It watches (never polls) the API server; every change enqueues the affected object, and one worker thread
reconciles the queue, so it stays idle when nothing changes.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import os
import signal
import sys
import threading
import time

import urllib3
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from devcluster import istio_standin as istio
from devcluster import platform_status as ps
from devcluster.informer import Informer
from devcluster.ingress import Ingress
from devcluster.kubelet import ForeignArchKubelet

log = logging.getLogger("simulator")
KNATIVE_NAMESPACE = "knative-serving"
ISTIO_TABLE = ("istio-table", "", "")  # queue key: rebuild the Istio stand-in's routing table


class WorkQueue:
    """Keys to reconcile, each at most once, optionally not before a given time."""

    def __init__(self):
        self._heap: list[tuple[float, tuple]] = []
        self._due: dict[tuple, float] = {}
        self._cv = threading.Condition()

    def add(self, key: tuple, delay: float = 0.0) -> None:
        when = time.monotonic() + delay
        with self._cv:
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._cv.notify()

    def get(self) -> tuple:
        with self._cv:
            while True:
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier entry for the same key
                if self._heap and self._heap[0][0] <= time.monotonic():
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._cv.wait(timeout=(self._heap[0][0] - time.monotonic()) if self._heap else None)


class Simulator:
    def __init__(self, api: client.ApiClient, ingress_port: int, state_dir: str):
        self.api = api
        self.state_dir = state_dir
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.extensions = client.ApiextensionsV1Api(api)
        self.queue = WorkQueue()
        self.ingress = Ingress(ingress_port, self._istio_cluster_view)
        self.platforms = ps.PlatformStatus(self)
        self.informers: list[Informer] = []
        self.custom_informers: dict[tuple, Informer] = {}
        self._make_informers()
        self._make_istio_informers()
        self.kubelet = ForeignArchKubelet(self.core, self.nodes)

    # ----- what is watched -----------------------------------------------------------------------------
    def _custom(self, kind: tuple, on_change) -> Informer:
        group, version, plural, _ = kind
        informer = self._inform(
            f"{group}/{plural}",
            self.custom.list_cluster_custom_object,
            on_change,
            group=group,
            version=version,
            plural=plural,
        )
        self.custom_informers[kind] = informer
        return informer

    def _inform(self, name: str, call, on_change, **kwargs) -> Informer:
        informer = Informer(self.api, name, call, on_change, **kwargs)
        self.informers.append(informer)
        return informer

    def _make_informers(self) -> None:
        self.nodes = self._inform("nodes", self.core.list_node, lambda o, d: None)
        self.pods = self._inform(
            "pods", self.core.list_pod_for_all_namespaces, lambda o, d: d or self._enqueue("pod", o)
        )
        self.services = self._inform(
            "core-services",
            self.core.list_service_for_all_namespaces,
            lambda o, d: d or self._enqueue("service", o),
        )
        self._custom(ps.CERTIFICATES, lambda o, d: d or self._enqueue("certificate", o))
        self._custom(ps.ISSUERS, lambda o, d: d or self._enqueue("issuer", o))
        self._custom(ps.CLUSTER_ISSUERS, lambda o, d: d or self._enqueue("clusterissuer", o))
        self.webhooks = {
            "validating": self._inform(
                "validatingwebhooks",
                self.admission.list_validating_webhook_configuration,
                lambda o, d: d or self._enqueue("validating", o),
            ),
            "mutating": self._inform(
                "mutatingwebhooks",
                self.admission.list_mutating_webhook_configuration,
                lambda o, d: d or self._enqueue("mutating", o),
            ),
            "crd": self._inform(
                "crds",
                self.extensions.list_custom_resource_definition,
                lambda o, d: d or self._enqueue("crd", o),
            ),
        }
        self.by_kind = {
            "certificate": self.custom_informers[ps.CERTIFICATES],
            "issuer": self.custom_informers[ps.ISSUERS],
            "clusterissuer": self.custom_informers[ps.CLUSTER_ISSUERS],
            "service": self.services,
            "pod": self.pods,
            **self.webhooks,
        }

    def _enqueue(self, kind: str, obj: dict) -> None:
        meta = obj["metadata"]
        self.queue.add((kind, meta.get("namespace", ""), meta["name"]))

    # ----- the worker ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.ingress.serve_forever()
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            informer.synced.wait(timeout=30)
        log.info("simulator ready: ingress on 127.0.0.1:%d", self.ingress.server.server_address[1])
        while True:
            key = self.queue.get()
            try:
                self._reconcile(key)
            except ApiException as error:  # e.g. an invalid pod spec: said once per retry, in one line
                log.warning("reconciling %s failed (retrying in 5s): %s %s", key, error.status, error.body)
                self.queue.add(key, 5.0)
            except urllib3.exceptions.HTTPError as error:  # the API server is down: the informers say so too
                log.warning("reconciling %s failed (retrying in 5s): %s", key, error)
                self.queue.add(key, 5.0)
            except Exception:
                log.exception("reconciling %s failed; retrying in 5s", key)
                self.queue.add(key, 5.0)

    def _reconcile(self, key: tuple) -> None:
        kind, namespace, name = key
        if self._reconcile_istio(kind, namespace, name):
            return
        obj = self.by_kind[kind].get(namespace, name)
        if obj is None:
            return
        if kind == "pod":
            self.kubelet.sync(obj)
        elif kind == "certificate":
            self.platforms.certificate(obj)
        elif kind in ("issuer", "clusterissuer"):
            self.platforms.issuer(ps.ISSUERS if kind == "issuer" else ps.CLUSTER_ISSUERS, obj)
        elif kind == "service":
            self.platforms.load_balancer(obj)
        else:
            self.platforms.inject_ca(kind, obj)

    # ----- the Istio / net-istio stand-in (istio_standin.py; routing in ingress.py) ----------------------
    def _make_istio_informers(self) -> None:
        discovery = client.DiscoveryV1Api(self.api)
        self.endpoint_slices = self._inform(
            "endpointslices", discovery.list_endpoint_slice_for_all_namespaces, lambda o, d: None
        )
        self.network_config = self._inform(
            "config-network",
            self.core.list_namespaced_config_map,
            lambda o, d: self._enqueue_istio(),
            namespace=KNATIVE_NAMESPACE,
            field_selector="metadata.name=config-network",
        )
        self.kingresses = self._custom(istio.KINGRESSES, lambda o, d: self._enqueue_istio(o, d))
        self.virtual_services = self._custom(istio.VIRTUAL_SERVICES, lambda o, d: self.queue.add(ISTIO_TABLE))

    def _enqueue_istio(self, kingress: dict | None = None, deleted: bool = False) -> None:
        self.queue.add(ISTIO_TABLE)
        for obj in [] if deleted else [kingress] if kingress else self.kingresses.items():
            self.queue.add(("kingress", obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def _istio_cluster_view(self) -> istio.ClusterView:
        return istio.ClusterView.of(self.services.items(), self.endpoint_slices.items())

    def _reconcile_istio(self, kind: str, namespace: str, name: str) -> bool:
        """True when the key was the Istio stand-in's: the routing table, or a KIngress's status."""
        default_class = istio.default_ingress_class(
            self.network_config.get(KNATIVE_NAMESPACE, "config-network")
        )
        if kind == ISTIO_TABLE[0]:
            table = istio.RoutingTable.build(
                self.kingresses.items(), self.virtual_services.items(), default_class
            )
            self.ingress.set_istio_table(table)
            return True
        if kind != "kingress":
            return False
        kingress = self.kingresses.get(namespace, name)
        if kingress and istio.is_istio_class(kingress, default_class):
            self.platforms._patch_status(istio.KINGRESSES, kingress, istio.kingress_status(kingress))
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.simulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--ingress-port", type=int, required=True)
    parser.add_argument("--state-dir", default=os.environ.get("KSA_CLUSTER_DIR", "."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Its per-attempt "Retrying ..." lines while the API server is down: the informers report the outage.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    api = kube_config.new_client_from_config(config_file=args.kubeconfig)
    simulator = Simulator(api, args.ingress_port, args.state_dir)

    def stop(signum, frame):
        log.info("stopping")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    simulator.run()


if __name__ == "__main__":
    main()
