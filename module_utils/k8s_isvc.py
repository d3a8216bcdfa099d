"""Wait for an InferenceService to be Ready for its current spec, or explain why it is not.

Readiness is event-driven: the InferenceService is followed with a watch (see k8s_watch.py), so the wait
returns as soon as the API server delivers the status that makes it Ready. While it is not Ready, the
predictor's pods, the related events and failing containers' last log lines are re-read every
`check_interval` seconds to spot failures that cannot heal without a spec change (see
isvc_status.diagnose); once such a failure has persisted `terminal_grace` seconds the wait fails
early, otherwise it fails at `timeout` with the same diagnosis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .isvc_status import (
    ISVC_POD_LABEL,
    Evidence,
    Finding,
    TerminalTracker,
    diagnose,
    evaluate_readiness,
    full_name,
    render_findings,
    summarize,
)
from .k8s_watch import ObjectWatch

try:
    from kubernetes.client import CoreV1Api
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
    from urllib3.exceptions import HTTPError
except ImportError:  # reported by AnsibleK8SModule's dependency check
    DynamicApiError = ResourceNotFoundError = HTTPError = Exception

ISVC_API_VERSION = "serving.kserve.io/v1beta1"
EVENT_LIMIT = 500
EVENTS_SHOWN = 10


class WaitFailed(Exception):
    """The InferenceService did not become Ready; `result` holds the module's return values."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


class KServeMissing(Exception):
    """The API server does not serve InferenceServices (KServe's CRDs are not installed)."""


@dataclass
class WaitSettings:
    timeout: float = 300.0
    terminal_grace: float | None = 15.0  # None: never fail early
    check_interval: float = 5.0
    log_lines: int = 20


def inference_service_resource(client):
    try:
        return client.resource("InferenceService", ISVC_API_VERSION)
    except ResourceNotFoundError as exc:
        raise KServeMissing(
            f"the API server does not serve InferenceService ({ISVC_API_VERSION}): is KServe installed?"
        ) from exc


def read_readiness(client, name: str, namespace: str) -> dict:
    """One read, no waiting (check mode): current readiness and status figures."""
    watch = ObjectWatch(client, inference_service_resource(client), name, namespace)
    isvc = _require(watch, client, name, namespace)
    readiness = evaluate_readiness(isvc)
    return {"ready": readiness.ready, "waiting_for": readiness.waiting_for, **summarize(isvc)}


def wait_for_inference_service(
    client, name: str, namespace: str, settings: WaitSettings, clock=time.monotonic
) -> dict:
    """Block until Ready for the current spec; raise WaitFailed with a diagnosis otherwise."""
    start = clock()
    deadline = start + settings.timeout
    watch = ObjectWatch(client, inference_service_resource(client), name, namespace, clock=clock)
    tracker = TerminalTracker(settings.terminal_grace)
    isvc = _require(watch, client, name, namespace)
    next_check = start  # check pods/events at once if not Ready, then every check_interval
    try:
        while True:
            readiness = evaluate_readiness(isvc)
            if readiness.ready:
                return _result(isvc, readiness, clock() - start, watch)
            now = clock()
            if now >= next_check or now >= deadline:
                findings = diagnose(collect_evidence(client, isvc, settings.log_lines))
                terminal = tracker.update(findings, now)
                if terminal or now >= deadline:
                    raise _failure(isvc, readiness, findings, terminal, clock() - start, watch)
                next_check = now + settings.check_interval
            change = watch.next_change(until=min(deadline, next_check))
            if change is None:
                continue
            if change.type == "DELETED":
                raise WaitFailed(
                    f"InferenceService {namespace}/{name} was deleted while waiting for it to be Ready",
                    {"ready": False, "elapsed": round(clock() - start, 3), "watch": watch.stats},
                )
            isvc = change.object
    finally:
        watch.close()


def _require(watch: ObjectWatch, client, name: str, namespace: str) -> dict:
    isvc = watch.get()
    if isvc is not None:
        return isvc
    existing = sorted(
        item["metadata"]["name"]
        for item in inference_service_resource(client).get(namespace=namespace).to_dict().get("items", [])
    )
    known = f"; InferenceServices in {namespace}: {', '.join(existing)}" if existing else ""
    raise WaitFailed(f"InferenceService {namespace}/{name} not found{known}", {"ready": False})


def _result(isvc: dict, readiness, elapsed: float, watch: ObjectWatch) -> dict:
    return {
        "ready": readiness.ready,
        "waiting_for": readiness.waiting_for,
        "elapsed": round(elapsed, 3),
        "watch": dict(watch.stats),
        **summarize(isvc),
    }


def _failure(isvc, readiness, findings: list[Finding], terminal: list[Finding], elapsed, watch) -> WaitFailed:
    name = full_name(isvc)
    if terminal:
        more = f" (and {len(terminal) - 1} more below)" if len(terminal) > 1 else ""
        head = (
            f"InferenceService {name} cannot become Ready without a change "
            f"(failed after {elapsed:.0f}s): {terminal[0].message}{more}"
        )
    else:
        head = f"InferenceService {name} is not Ready after {elapsed:.0f}s (timeout)"
    lines = [head, "waiting for:", *(f"- {w}" for w in readiness.waiting_for)]
    if findings:
        lines += ["diagnosis:", render_findings(findings)]
    if watch.last_error:
        lines.append(f"(last watch connection error, recovered: {watch.last_error})")
    result = _result(isvc, readiness, elapsed, watch)
    result.update(
        terminal=bool(terminal),
        diagnosis=[f.render() for f in findings],
        failure_kinds=sorted({f.kind for f in (terminal or findings)}),
    )
    return WaitFailed("\n".join(lines), result)


# --------------------------------------------------------------------------- evidence


def collect_evidence(client, isvc: dict, log_lines: int) -> Evidence:
    """The InferenceService's pods, related Warning events and failing containers' last log lines.
    Read errors (e.g. RBAC) are reported as findings' text rather than failing the wait."""
    meta = isvc["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    evidence = Evidence(isvc=isvc)
    try:
        pods = client.resource("Pod", "v1").get(
            namespace=namespace, label_selector=f"{ISVC_POD_LABEL}={name}"
        )
        evidence.pods = pods.to_dict().get("items", [])
    except (DynamicApiError, HTTPError, OSError) as exc:
        evidence.unreadable.append(f"could not list pods: {exc}")
    try:
        events = client.resource("Event", "v1").get(namespace=namespace, limit=EVENT_LIMIT)
        evidence.events += _related_events(events.to_dict().get("items", []), name, evidence.pods)
    except (DynamicApiError, HTTPError, OSError) as exc:
        evidence.unreadable.append(f"could not list events: {exc}")
    evidence.logs = _failing_container_logs(client, evidence.pods, log_lines)
    return evidence


def _related_events(events: list[dict], name: str, pods: list[dict]) -> list[dict]:
    """Events of the InferenceService, its pods, and the objects KServe/Knative name after it."""
    pod_names = {p["metadata"]["name"] for p in pods}
    prefixes = tuple(f"{name}-{c}" for c in ("predictor", "transformer", "explainer"))

    def related(event):
        obj = event.get("involvedObject") or {}
        other = obj.get("name", "")
        return other == name or other in pod_names or other.startswith(prefixes)

    chosen = [
        e
        for e in events
        if related(e) and (e.get("type") == "Warning" or "not supported" in e.get("message", ""))
    ]
    chosen.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return chosen[-EVENTS_SHOWN:]


def _failing_container_logs(client, pods: list[dict], log_lines: int) -> dict:
    if log_lines <= 0:
        return {}
    core = CoreV1Api(client.client.client)
    logs = {}
    for pod in pods:
        status = pod.get("status") or {}
        for container in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
            last = (container.get("lastState") or {}).get("terminated")
            now_terminated = (container.get("state") or {}).get("terminated") or {}
            failed_now = now_terminated.get("exitCode") not in (None, 0)
            if not (last or failed_now):
                continue
            try:
                text = core.read_namespaced_pod_log(
                    pod["metadata"]["name"],
                    pod["metadata"]["namespace"],
                    container=container["name"],
                    tail_lines=log_lines,
                    previous=bool(last) and not failed_now,
                    _request_timeout=10,
                )
            except Exception:  # logs are a bonus: no kubelet, rotated away, RBAC...
                continue
            if text:
                logs[(pod["metadata"]["name"], container["name"])] = text
    return logs
