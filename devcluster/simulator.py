"""The simulator: one process that plays the platform controllers which cannot run on the local control
plane (their images cannot be pulled here), so the automation and its tests see the status they would see
on a real cluster. See README.md ("The simulator") for what it does and its conventions.

    python -m devcluster.simulator --kubeconfig K --ingress-port P [--default-domain D]
        [--state-dir DIR] [--delay SECONDS]

It watches (never polls) the API server; every change enqueues the affected object, and one worker thread
reconciles the queue, so it stays idle when nothing changes.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import os
import pathlib
import signal
import sys
import threading
import time

import urllib3
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from devcluster import inference_service as isvc_mod
from devcluster import platform_status as ps
from devcluster.informer import Informer
from devcluster.ingress import Ingress
from devcluster.kubelet import PredictorKubelet
from devcluster.local_predictors import LocalPredictors

log = logging.getLogger("simulator")
KNATIVE_NAMESPACE, DOMAIN_CONFIGMAP = "knative-serving", "config-domain"


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
    def __init__(
        self, api: client.ApiClient, ingress_port: int, default_domain: str, state_dir: str, delay: float
    ):
        self.api = api
        self.state_dir = state_dir
        self.delay = delay
        self.default_domain = default_domain
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.extensions = client.ApiextensionsV1Api(api)
        self.queue = WorkQueue()
        self.local_predictors = LocalPredictors(
            pathlib.Path(state_dir), lambda ns, name: self._on_local_predictor(ns, name)
        )
        self.ingress = Ingress(ingress_port, self._backend_port)
        self.isvc = isvc_mod.InferenceServices(self)
        self.kubelet = PredictorKubelet(self)
        self.platforms = ps.PlatformStatus(self)
        self.informers: list[Informer] = []
        self.custom_informers: dict[tuple, Informer] = {}
        self._make_informers()

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
        enqueue_isvc = self._enqueue_owner_isvc
        self.nodes = self._inform("nodes", self.core.list_node, lambda o, d: None)
        self.pods = self._inform(
            "pods",
            self.core.list_pod_for_all_namespaces,
            self._on_pod,
            label_selector=isvc_mod.ISVC_LABEL,
        )
        self.deployments = self._inform(
            "deployments",
            self.apps.list_deployment_for_all_namespaces,
            enqueue_isvc,
            label_selector=isvc_mod.ISVC_LABEL,
        )
        self.domain_config = self._inform(
            "config-domain",
            self.core.list_namespaced_config_map,
            lambda o, d: self._enqueue_all(),
            namespace=KNATIVE_NAMESPACE,
            field_selector=f"metadata.name={DOMAIN_CONFIGMAP}",
        )
        self.services = self._inform(
            "core-services",
            self.core.list_service_for_all_namespaces,
            lambda o, d: d or self._enqueue("service", o),
        )
        isvc_kind = (isvc_mod.GROUP, isvc_mod.VERSION, isvc_mod.PLURAL, True)
        self.isvcs = self._custom(isvc_kind, lambda o, d: self._enqueue("isvc", o))
        self.serving_runtimes = self._custom(
            ("serving.kserve.io", "v1alpha1", "servingruntimes", True), lambda o, d: self._enqueue_all()
        )
        self.cluster_serving_runtimes = self._custom(
            ("serving.kserve.io", "v1alpha1", "clusterservingruntimes", False),
            lambda o, d: self._enqueue_all(),
        )
        self._custom(ps.CERTIFICATES, lambda o, d: d or self._enqueue("certificate", o))
        self._custom(ps.ISSUERS, lambda o, d: d or self._enqueue("issuer", o))
        self._custom(ps.CLUSTER_ISSUERS, lambda o, d: d or self._enqueue("clusterissuer", o))
        self._custom(ps.KNATIVE_SERVICES, lambda o, d: d or self._enqueue("ksvc", o))
        self._custom(ps.KNATIVE_ROUTES, lambda o, d: d or self._enqueue("route", o))
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
            "certificate": self._informer_of(ps.CERTIFICATES),
            "issuer": self._informer_of(ps.ISSUERS),
            "clusterissuer": self._informer_of(ps.CLUSTER_ISSUERS),
            "ksvc": self._informer_of(ps.KNATIVE_SERVICES),
            "route": self._informer_of(ps.KNATIVE_ROUTES),
            "service": self.services,
            **self.webhooks,
        }

    def _informer_of(self, kind: tuple) -> Informer:
        return self.custom_informers[kind]

    # ----- change handlers -----------------------------------------------------------------------------
    def _enqueue(self, kind: str, obj: dict, delay: float | None = None) -> None:
        meta = obj["metadata"]
        wait = self.delay if delay is None and kind in ("certificate", "ksvc", "route") else (delay or 0.0)
        self.queue.add((kind, meta.get("namespace", ""), meta["name"]), wait)

    def _enqueue_owner_isvc(self, obj: dict, deleted: bool) -> None:
        name = obj["metadata"].get("labels", {}).get(isvc_mod.ISVC_LABEL)
        if name:
            self.queue.add(("isvc", obj["metadata"]["namespace"], name))

    def _on_pod(self, pod: dict, deleted: bool) -> None:
        if not deleted:
            self.queue.add(("pod", pod["metadata"]["namespace"], pod["metadata"]["name"]))
        self._enqueue_owner_isvc(pod, deleted)

    def _on_local_predictor(self, namespace: str, isvc: str) -> None:
        if not isvc:  # the tiny model is there: look at every InferenceService again
            self._enqueue_all()
            return
        for pod in self.pods.items():
            labels = pod["metadata"].get("labels", {})
            if pod["metadata"]["namespace"] == namespace and labels.get(isvc_mod.ISVC_LABEL) == isvc:
                self.queue.add(("pod", namespace, pod["metadata"]["name"]))
        if isvc:
            self.queue.add(("isvc", namespace, isvc))

    def _enqueue_all(self) -> None:
        for obj in self.isvcs.items():
            self._enqueue("isvc", obj)
        for kind in ("ksvc", "route"):
            for obj in self.by_kind[kind].items():
                self._enqueue(kind, obj, delay=0)

    # ----- what the reconcilers read -------------------------------------------------------------------
    def domain(self) -> str:
        """Knative's domain: config-domain's first plain entry (no selector), else the default."""
        config = self.domain_config.get(KNATIVE_NAMESPACE, DOMAIN_CONFIGMAP)
        for domain, selector in sorted(((config or {}).get("data") or {}).items()):
            if not domain.startswith("_") and not (selector or "").strip():
                return domain
        return self.default_domain

    def runtimes(self, namespace: str) -> list[dict]:
        return [r for r in self.serving_runtimes.items() if r["metadata"]["namespace"] == namespace]

    def cluster_runtimes(self) -> list[dict]:
        return self.cluster_serving_runtimes.items()

    def _backend_port(self, namespace: str, revision: str) -> int | None:
        predictor = self.local_predictors.get(namespace, revision)
        return predictor.port if predictor and predictor.ready else None

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
        if kind == "isvc":
            again = self.isvc.reconcile(namespace, name)
            if again is not None:
                self.queue.add(key, again)
            return
        if kind == "pod":
            pod = self.pods.get(namespace, name)
            if pod:
                self.kubelet.sync(pod)
            return
        obj = self.by_kind[kind].get(namespace, name)
        if obj is None:
            return
        if kind == "certificate":
            self.platforms.certificate(obj)
        elif kind in ("issuer", "clusterissuer"):
            self.platforms.issuer(ps.ISSUERS if kind == "issuer" else ps.CLUSTER_ISSUERS, obj)
        elif kind == "ksvc":
            self.platforms.knative_service(obj)
        elif kind == "route":
            self.platforms.knative_route(obj)
        elif kind == "service":
            self.platforms.load_balancer(obj)
        else:
            self.platforms.inject_ca(kind, obj)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.simulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--ingress-port", type=int, required=True)
    parser.add_argument("--default-domain", default="127.0.0.1.sslip.io", help="when config-domain has none")
    parser.add_argument("--state-dir", default=os.environ.get("KSA_CLUSTER_DIR", "."))
    parser.add_argument(
        "--delay",
        type=float,
        default=float(os.environ.get("KSA_SIM_DELAY", "1.5")),
        help="seconds between pods being ready and the status saying so (env KSA_SIM_DELAY)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Its per-attempt "Retrying ..." lines while the API server is down: the informers report the outage.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    api = kube_config.new_client_from_config(config_file=args.kubeconfig)
    simulator = Simulator(api, args.ingress_port, args.default_domain, args.state_dir, args.delay)

    def stop(signum, frame):
        log.info("stopping: local predictors first")
        simulator.local_predictors.stop_all()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    simulator.run()


if __name__ == "__main__":
    main()
