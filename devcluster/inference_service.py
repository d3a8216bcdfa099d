"""The simulator's KServe + Knative for InferenceServices (serverless mode).

For each InferenceService it creates one real Deployment per Knative revision (`NAME-predictor-0000N`) so
the real scheduler decides where (and whether) its pods run and kwok marks them Running; it plays the
kubelet for what kwok cannot know (an image built for another architecture crashes with `exec format
error`, our own model server runs as a local process); and it writes the status KServe 0.14.1 would
write, derived from those pods: conditions, URLs, revisions, traffic and modelStatus.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from kubernetes.client.rest import ApiException

from devcluster import conditions as c
from devcluster.predictor import (
    MODEL_DIR_ANNOTATION,
    InvalidSpec,
    build_predictor,
    image_arch,
    is_our_model_server,
    pod_spec,
)

log = logging.getLogger("simulator.isvc")

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
FINALIZER = "inferenceservice.finalizers"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
REVISION_LABEL = "serving.knative.dev/revision"
HASH_ANNOTATION = "simulator.kserve-ansible.io/predictor-hash"
CONTAINER = "kserve-container"


@dataclass
class RevisionState:
    name: str
    ready: bool = False
    failed: bool = False
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    pod: str = ""
    pods: int = 0
    crash_looping: bool = False
    detail: str = ""


def revision_number(name: str) -> int:
    match = re.search(r"-(\d{5})$", name)
    return int(match.group(1)) if match else 0


def pod_condition(pod: dict, type_: str) -> dict | None:
    return next((x for x in pod.get("status", {}).get("conditions") or [] if x["type"] == type_), None)


def container_status(pod: dict, name: str = CONTAINER) -> dict | None:
    return next((x for x in pod.get("status", {}).get("containerStatuses") or [] if x["name"] == name), None)


class InferenceServices:
    def __init__(self, sim):
        self.sim = sim
        self.ready_since: dict[tuple[str, str], float] = {}

    # ----- the main loop's entry -----------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> float | None:
        """Bring one InferenceService's revisions and status up to date; returns seconds until it should be
        looked at again (None: only on the next change)."""
        isvc = self.sim.isvcs.get(namespace, name)
        if isvc is None:
            self._forget(namespace, name)
            return None
        meta = isvc["metadata"]
        if meta.get("deletionTimestamp"):
            self._forget(namespace, name)
            if FINALIZER in (meta.get("finalizers") or []):
                finalizers = [f for f in meta["finalizers"] if f != FINALIZER]
                self._patch(namespace, name, {"metadata": {"finalizers": finalizers}})
            return None
        if FINALIZER not in (meta.get("finalizers") or []):
            self._patch(
                namespace, name, {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}}
            )
        try:
            predictor = build_predictor(isvc, self.sim.runtimes(namespace), self.sim.cluster_runtimes())
        except InvalidSpec as error:
            self._write_status(isvc, self._invalid_spec_status(isvc, error))
            return None
        revisions = self._ensure_revision(isvc, predictor)
        states = {rev: self._revision_state(isvc, deployment) for rev, deployment in revisions.items()}
        status, keep = self._status(isvc, predictor, states)
        # Routes first, then retire revisions: like Knative, traffic moves before an old revision goes.
        self.sim.ingress.set_routes(namespace, name, self._routes(isvc, status))
        for rev, deployment in revisions.items():
            if rev not in keep:
                self._delete_revision(namespace, rev, deployment)
        if self._write_status(isvc, status):
            summary = ", ".join(
                f"{r}: {'ready' if s.ready else s.reason or s.detail or 'waiting'}" for r, s in states.items()
            )
            traffic = status["components"]["predictor"].get("traffic", [])
            log.info(
                "%s/%s generation %s: %s; traffic %s",
                namespace,
                name,
                isvc["metadata"].get("generation"),
                summary,
                [(t["revisionName"], t["percent"]) for t in traffic],
            )
        waits = [
            since + self.sim.delay - time.monotonic()
            for (ns, rev), since in self.ready_since.items()
            if ns == namespace and rev in states and not states[rev].ready
        ]
        return max(0.05, min(waits)) if waits else None

    def _forget(self, namespace: str, name: str) -> None:
        self.sim.ingress.set_routes(namespace, name, {})
        prefix = f"{name}-predictor-"
        for ns, rev in self.sim.local_predictors.revisions():
            if ns == namespace and rev.startswith(prefix):
                self.sim.local_predictors.stop(ns, rev)

    def _patch(self, namespace: str, name: str, body: dict, status: bool = False) -> None:
        call = (
            self.sim.custom.patch_namespaced_custom_object_status
            if status
            else self.sim.custom.patch_namespaced_custom_object
        )
        try:
            call(GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status != 404:
                raise

    # ----- revisions (one Deployment each) ------------------------------------------------------------
    def _deployments(self, namespace: str, name: str) -> dict[str, dict]:
        found = {
            d["metadata"]["labels"][REVISION_LABEL]: d
            for d in self.sim.deployments.items()
            if d["metadata"]["namespace"] == namespace
            and d["metadata"].get("labels", {}).get(ISVC_LABEL) == name
            and REVISION_LABEL in d["metadata"].get("labels", {})
        }
        return dict(sorted(found.items(), key=lambda item: revision_number(item[0])))

    def _ensure_revision(self, isvc: dict, predictor) -> dict[str, dict]:
        """The revisions' Deployments, with a new revision when the predictor changed (as Knative does)."""
        namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        revisions = self._deployments(namespace, name)
        spec_hash = predictor.spec_hash()
        latest = list(revisions.values())[-1] if revisions else None
        if latest and latest["metadata"].get("annotations", {}).get(HASH_ANNOTATION) == spec_hash:
            return revisions
        known = [revision_number(r) for r in revisions]
        created = (
            isvc.get("status", {}).get("components", {}).get("predictor", {}).get("latestCreatedRevision")
        )
        if created:
            known.append(revision_number(created))
        rev = f"{name}-predictor-{max(known, default=0) + 1:05d}"
        body = self._deployment(isvc, predictor, rev, spec_hash)
        try:
            created_obj = self.sim.apps.create_namespaced_deployment(namespace, body)
            revisions[rev] = self.sim.api.sanitize_for_serialization(created_obj)
            # The next reconcile may run before the watch has delivered this Deployment: without this it
            # would not see revision 1 and create a second one for the same spec.
            self.sim.deployments.remember(revisions[rev])
            log.info("created revision %s/%s", namespace, rev)
        except ApiException as error:
            if error.status != 409:
                raise
        return revisions

    def _deployment(self, isvc: dict, predictor, rev: str, spec_hash: str) -> dict:
        name = isvc["metadata"]["name"]
        labels = {
            ISVC_LABEL: name,
            "component": "predictor",
            "serving.kserve.io/inferenceservice-component": "predictor",
            REVISION_LABEL: rev,
            "serving.knative.dev/configuration": f"{name}-predictor",
            "serving.knative.dev/service": f"{name}-predictor",
            "app": rev,
        }
        annotations = {
            k: v
            for k, v in (isvc["metadata"].get("annotations") or {}).items()
            if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": f"{rev}-deployment",
                "namespace": isvc["metadata"]["namespace"],
                "labels": labels,
                "annotations": {**annotations, HASH_ANNOTATION: spec_hash},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "InferenceService",
                        "name": name,
                        "uid": isvc["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ],
            },
            "spec": {
                "replicas": predictor.replicas,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {REVISION_LABEL: rev}},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": pod_spec(predictor),
                },
            },
        }

    def _delete_revision(self, namespace: str, rev: str, deployment: dict) -> None:
        self.sim.local_predictors.stop(namespace, rev)
        self.ready_since.pop((namespace, rev), None)
        try:
            self.sim.apps.delete_namespaced_deployment(
                deployment["metadata"]["name"], namespace, propagation_policy="Background"
            )
            log.info("deleted revision %s/%s", namespace, rev)
        except ApiException as error:
            if error.status != 404:
                raise

    def pods_of(self, namespace: str, rev: str) -> list[dict]:
        return [
            p
            for p in self.sim.pods.items()
            if p["metadata"]["namespace"] == namespace
            and p["metadata"].get("labels", {}).get(REVISION_LABEL) == rev
            and not p["metadata"].get("deletionTimestamp")
        ]

    def runs_here(self, image: str, annotations: dict) -> bool:
        """Whether an image's architecture matches at least one node's (see predictor.image_arch)."""
        arch = image_arch(image, annotations)
        node_arches = {
            n["metadata"].get("labels", {}).get("kubernetes.io/arch") for n in self.sim.nodes.items()
        }
        return arch is None or arch in node_arches

    def _revision_state(self, isvc: dict, deployment: dict) -> RevisionState:
        namespace = isvc["metadata"]["namespace"]
        rev = deployment["metadata"]["labels"][REVISION_LABEL]
        state = RevisionState(rev)
        template = deployment["spec"]["template"]
        container = next(x for x in template["spec"]["containers"] if x["name"] == CONTAINER)
        annotations = template["metadata"].get("annotations") or {}
        local = None
        if is_our_model_server(container.get("image", "")) and self.runs_here(
            container["image"], annotations
        ):
            model_dir = self.sim.local_predictors.model_dir(annotations.get(MODEL_DIR_ANNOTATION))
            if model_dir is None:  # the tiny model is being made: not ready yet
                return state
            local = self.sim.local_predictors.ensure(
                namespace, isvc["metadata"]["name"], rev, container, model_dir
            )
        pods = self.pods_of(namespace, rev)
        state.pods = len(pods)
        for pod in pods:
            scheduled = pod_condition(pod, "PodScheduled")
            if scheduled and scheduled["status"] == "False":
                state.failed, state.reason = True, scheduled.get("reason", "Unschedulable")
                state.message, state.pod = scheduled.get("message", ""), pod["metadata"]["name"]
                break
            status = container_status(pod) or {}
            terminated = (status.get("lastState") or {}).get("terminated") or (status.get("state") or {}).get(
                "terminated"
            )
            if terminated and (terminated.get("exitCode") or terminated.get("message")):
                state.failed, state.exit_code = True, terminated.get("exitCode", 0)
                state.reason = f"ExitCode{state.exit_code}"
                state.message = f"Container failed with: {terminated.get('message', '')}"
                state.pod = pod["metadata"]["name"]
                state.crash_looping = (status.get("state") or {}).get("waiting", {}).get(
                    "reason"
                ) == "CrashLoopBackOff"
                break
        ready_pods = [p for p in pods if (pod_condition(p, "Ready") or {}).get("status") == "True"]
        wanted = deployment["spec"].get("replicas", 1)
        key = (namespace, rev)
        if state.failed or len(ready_pods) < wanted or (local and not local.ready):
            local_state = "" if local is None else f", local server {'ready' if local.ready else 'starting'}"
            state.detail = f"{len(ready_pods)}/{wanted} pods ready{local_state}"
            self.ready_since.pop(key, None)
            return state
        since = self.ready_since.setdefault(key, time.monotonic())
        state.ready = time.monotonic() - since >= self.sim.delay
        return state

    # ----- status --------------------------------------------------------------------------------------
    def _urls(self, isvc: dict) -> dict[str, str]:
        name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
        domain = self.sim.domain()
        return {
            "url": f"http://{name}.{namespace}.{domain}",
            "address": f"http://{name}.{namespace}.svc.cluster.local",
            "predictor": f"http://{name}-predictor.{namespace}.{domain}",
            "predictor_address": f"http://{name}-predictor.{namespace}.svc.cluster.local",
            "prev": f"http://prev-{name}-predictor.{namespace}.{domain}",
            "latest": f"http://latest-{name}-predictor.{namespace}.{domain}",
        }

    def _status(self, isvc: dict, predictor, states: dict[str, RevisionState]) -> tuple[dict, set[str]]:
        name = isvc["metadata"]["name"]
        old = isvc.get("status") or {}
        old_predictor = (old.get("components") or {}).get("predictor") or {}
        urls = self._urls(isvc)
        latest_created = list(states)[-1]
        latest = states[latest_created]
        ready_revs = [rev for rev, s in states.items() if s.ready]
        latest_ready = ready_revs[-1] if ready_revs else None
        rolled = old_predictor.get("latestRolledoutRevision")
        previous = old_predictor.get("previousRolledoutRevision")
        canary = isvc["spec"].get("predictor", {}).get("canaryTrafficPercent")
        traffic: list[dict] = []
        if (
            latest_ready
            and canary is not None
            and canary < 100
            and rolled in ready_revs
            and rolled != latest_ready
        ):
            traffic = [
                {
                    "tag": "prev",
                    "revisionName": rolled,
                    "percent": 100 - canary,
                    "latestRevision": False,
                    "url": urls["prev"],
                },
                {
                    "tag": "latest",
                    "revisionName": latest_ready,
                    "percent": canary,
                    "latestRevision": True,
                    "url": urls["latest"],
                },
            ]
        elif latest_ready:
            traffic = [{"revisionName": latest_ready, "percent": 100, "latestRevision": True}]
            if rolled != latest_ready:
                previous, rolled = rolled, latest_ready
        else:  # no ready revision right now: the route keeps what it had, as Knative's does
            traffic = [t for t in old_predictor.get("traffic") or [] if t["revisionName"] in states]
        configuration = f"{name}-predictor"
        if latest.ready:
            config_cond = c.condition("Ready", c.TRUE)
        elif latest.failed:
            config_cond = c.condition(
                "Ready",
                c.FALSE,
                "RevisionFailed",
                f'Revision "{latest_created}" failed with message: {latest.message}.',
            )
        else:
            config_cond = c.condition("Ready", c.UNKNOWN)
        if latest_ready:
            route_cond = c.condition("Ready", c.TRUE)
        elif latest.failed:
            route_cond = c.condition(
                "Ready",
                c.FALSE,
                "RevisionMissing",
                f'Configuration "{configuration}" does not have any ready Revision.',
            )
        else:
            route_cond = c.condition(
                "Ready",
                c.UNKNOWN,
                "RevisionMissing",
                f'Configuration "{configuration}" is waiting for a Revision to become ready.',
            )
        predictor_ready = c.aggregate("PredictorReady", [config_cond, route_cond])
        ingress = (
            c.condition("IngressReady", c.TRUE)
            if predictor_ready["status"] == c.TRUE
            else c.condition("IngressReady", predictor_ready["status"], "Predictor ingress not created")
        )
        conds = [
            c.renamed(config_cond, "PredictorConfigurationReady", "Info"),
            c.renamed(route_cond, "PredictorRouteReady", "Info"),
            c.renamed(config_cond, "LatestDeploymentReady", "Info"),
            c.renamed(route_cond, "RoutesReady", "Info"),
            predictor_ready,
            ingress,
            c.aggregate("Ready", [predictor_ready, ingress]),
        ]
        component = {
            "latestCreatedRevision": latest_created,
            "url": urls["predictor"],
            "address": {"url": urls["predictor_address"]},
        }
        if latest_ready:
            component["latestReadyRevision"] = latest_ready
        if rolled:
            component["latestRolledoutRevision"] = rolled
        if previous:
            component["previousRolledoutRevision"] = previous
        if traffic:
            component["traffic"] = traffic
        status = {
            "observedGeneration": isvc["metadata"].get("generation", 1),
            "conditions": c.with_transition_times(conds, old.get("conditions")),
            "components": {"predictor": component},
            "modelStatus": self._model_status(latest, latest_created, latest_ready),
            "deploymentMode": "Serverless",
        }
        if predictor.runtime:
            status["servingRuntimeName"] = predictor.runtime
        if predictor.cluster_runtime:
            status["clusterServingRuntimeName"] = predictor.cluster_runtime
        if ingress["status"] == c.TRUE:
            status["url"] = urls["url"]
            status["address"] = {"url": urls["address"]}
        keep = {latest_created, rolled, *(t["revisionName"] for t in traffic)}
        return status, keep

    @staticmethod
    def _model_status(latest: RevisionState, latest_created: str, latest_ready: str | None) -> dict:
        if latest.ready and latest_ready == latest_created:
            return {
                "transitionStatus": "UpToDate",
                "states": _states("Loaded", "Loaded"),
                "copies": {"failedCopies": 0, "totalCopies": latest.pods},
            }
        if latest.exit_code is not None:
            return {
                "transitionStatus": "BlockedByFailedLoad",
                "states": _states("Loaded" if latest_ready else None, "FailedToLoad"),
                "lastFailureInfo": {
                    "reason": "ModelLoadFailed",
                    "message": latest.message.removeprefix("Container failed with: "),
                    "exitCode": latest.exit_code,
                    "location": latest.pod,
                    "modelRevisionName": latest_created,
                },
                "copies": {"failedCopies": latest.pods, "totalCopies": latest.pods},
            }
        target = "Loading" if latest.pods and not latest.failed else "Pending"
        return {
            "transitionStatus": "InProgress",
            "states": _states("Loaded" if latest_ready else None, target),
            "copies": {"failedCopies": 0, "totalCopies": latest.pods},
        }

    def _invalid_spec_status(self, isvc: dict, error: InvalidSpec) -> dict:
        old = isvc.get("status") or {}
        conds = [
            c.condition("PredictorReady", c.UNKNOWN),
            c.condition("IngressReady", c.UNKNOWN, "Predictor ingress not created"),
            c.condition("Ready", c.UNKNOWN, "Predictor ingress not created"),
        ]
        return {
            "observedGeneration": isvc["metadata"].get("generation", 1),
            "conditions": c.with_transition_times(conds, old.get("conditions")),
            "modelStatus": {
                "transitionStatus": "InvalidSpec",
                "states": _states(None, "FailedToLoad"),
                "lastFailureInfo": {"reason": error.reason, "message": error.message},
            },
        }

    def _write_status(self, isvc: dict, status: dict) -> bool:
        """Patch the status unless it is already so; True when it was written."""
        old = isvc.get("status") or {}
        comparable_old = {k: v for k, v in old.items() if k != "conditions"}
        comparable_new = {k: v for k, v in status.items() if k != "conditions"}
        if comparable_old == comparable_new and c.same_conditions(
            old.get("conditions"), status.get("conditions")
        ):
            return False
        body = {"status": {**{k: None for k in old if k not in status}, **status}}
        self._patch(isvc["metadata"]["namespace"], isvc["metadata"]["name"], body, status=True)
        return True

    def _routes(self, isvc: dict, status: dict) -> dict[str, list[tuple[str, int]]]:
        """Host -> [(revision, percent)] as the status's traffic says. Like Knative, a route that once
        existed keeps serving its revisions while a new revision rolls out (IngressReady may be False then);
        nothing is routed before the first revision gets traffic."""
        traffic = status["components"]["predictor"].get("traffic", [])
        if not traffic:
            return {}
        split = [(t["revisionName"], t["percent"]) for t in traffic]
        urls = self._urls(isvc)
        routes = {_host(urls["url"]): split, _host(urls["predictor"]): split}
        for t in traffic:
            if t.get("tag"):
                routes[_host(urls[t["tag"]])] = [(t["revisionName"], 100)]
        return routes


def _states(active: str | None, target: str) -> dict:
    """modelStatus.states; an unset activeModelState is left to the CRD's default (Pending)."""
    return (
        {"activeModelState": active, "targetModelState": target} if active else {"targetModelState": target}
    )


def _host(url: str) -> str:
    return url.split("://", 1)[1]
