"""Wait for an InferenceService to be Ready for its current spec, or explain why it is not.

Readiness is event-driven: the InferenceService is followed with a watch (see k8s_watch.py), so the wait
returns as soon as the API server delivers the status that makes it Ready. While it is not Ready, the
predictor's pods, the related events and failing containers' last log lines are re-read every
`check_interval` seconds to spot failures that cannot heal without a spec change (see
isvc_status.diagnose); once such a failure has persisted `terminal_grace` seconds the wait fails
early, otherwise it fails at `timeout` with the same diagnosis.

`wait_for_inference_services` does the same for many InferenceServices of one namespace (a list of names
or a label selector) with one watch and one read of the namespace's pods and events per check: each one
gets its own result, Ready or failed with its own diagnosis, and the wait goes on for the others until
every one is Ready or has failed.
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
from .k8s_watch import CollectionWatch, ObjectWatch

try:
    from kubernetes.client import CoreV1Api
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
    from urllib3.exceptions import HTTPError
except ImportError:  # reported by AnsibleK8SModule's dependency check
    DynamicApiError = ResourceNotFoundError = HTTPError = Exception

ISVC_API_VERSION = "serving.kserve.io/v1beta1"
EVENT_LIMIT = 500
EVENTS_SHOWN = 10
REVISION_LABEL = "serving.knative.dev/revision"  # on a Knative revision's pods
DETAILED_FAILURES = 10  # a wait over many: the failure message explains the first ones in full


class WaitFailed(Exception):
    """The InferenceService did not become Ready; `result` holds the module's return values."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


class WaitManyFailed(Exception):
    """Some of the InferenceServices did not become Ready; `result` holds the module's return values (a
    result per InferenceService)."""

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
    message, result = _failure_report(isvc, readiness, findings, terminal, elapsed, watch)
    return WaitFailed(message, result)


def _failure_report(isvc, readiness, findings, terminal, elapsed, watch) -> tuple[str, dict]:
    """The failure message (what Ready waits for, the diagnosis with hints) and the result values."""
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
    return "\n".join(lines), result


# --------------------------------------------------------------------------- many at once


def _select(items: list[dict], names: list[str] | None) -> dict[str, dict]:
    chosen = {item["metadata"]["name"]: item for item in items}
    return {name: chosen[name] for name in names if name in chosen} if names is not None else chosen


def _not_found(namespace: str, name: str, existing) -> tuple[str, dict]:
    known = f"; InferenceServices in {namespace}: {', '.join(sorted(existing))}" if existing else ""
    message = f"InferenceService {namespace}/{name} not found{known}"
    return message, {"ready": False, "waiting_for": ["the InferenceService does not exist"]}


def _describe_selection(namespace: str, names, label_selector) -> str:
    if names is not None:
        return f"{namespace}: {', '.join(names)}"
    return f"{namespace} matching {label_selector}" if label_selector else namespace


def read_readiness_many(client, namespace: str, names=None, label_selector: str = "") -> dict:
    """One list, no waiting (check mode): the readiness of each InferenceService (a result per name)."""
    watch = CollectionWatch(client, inference_service_resource(client), namespace, label_selector)
    items = watch.list_objects()
    selected = _select(items, names)
    results = []
    for name in names if names is not None else sorted(selected):
        isvc = selected.get(name)
        if isvc is None:
            message, result = _not_found(namespace, name, [i["metadata"]["name"] for i in items])
            results.append({"name": name, "namespace": namespace, "msg": message, **result})
            continue
        readiness = evaluate_readiness(isvc)
        results.append(
            {
                "name": name,
                "namespace": namespace,
                "ready": readiness.ready,
                "waiting_for": readiness.waiting_for,
                **summarize(isvc),
            }
        )
    return _many_outcome(results)


def _many_outcome(results: list[dict], **extra) -> dict:
    return {
        "ready": bool(results) and all(r["ready"] for r in results),
        "results": results,
        "not_ready": [r["name"] for r in results if not r["ready"]],
        **extra,
    }


def wait_for_inference_services(
    client, namespace: str, settings: WaitSettings, names=None, label_selector: str = "", clock=time.monotonic
) -> dict:
    """Block until every chosen InferenceService of `namespace` is Ready for its current spec or has failed
    (terminal failure, deleted, missing, timeout): one watch for all of them. Raise WaitManyFailed when any
    failed, with a result per InferenceService (the failed ones with their diagnosis)."""
    start = clock()
    deadline = start + settings.timeout
    resource = inference_service_resource(client)
    watch = CollectionWatch(client, resource, namespace, label_selector, clock=clock)
    items = watch.list_objects()
    current = _select(items, names)
    existing = [item["metadata"]["name"] for item in items]
    order = list(names) if names is not None else sorted(current)
    if not order:
        raise WaitManyFailed(
            f"no InferenceService in {_describe_selection(namespace, names, label_selector)}",
            _many_outcome([], elapsed=0.0, watch=dict(watch.stats)),
        )
    outcomes: dict[str, dict] = {}
    messages: dict[str, str] = {}
    for name in order:
        if name not in current:
            messages[name], outcomes[name] = _not_found(namespace, name, existing)
    trackers = {name: TerminalTracker(settings.terminal_grace) for name in order}
    next_check = start

    def pending():
        return [name for name in order if name not in outcomes]

    try:
        while True:
            for name in pending():
                readiness = evaluate_readiness(current[name])
                if readiness.ready:
                    outcomes[name] = _result(current[name], readiness, clock() - start, watch)
            waiting = pending()
            if not waiting:
                break
            now = clock()
            if now >= next_check or now >= deadline:
                evidence = collect_evidence_many(client, [current[n] for n in waiting], settings.log_lines)
                for name, found in zip(waiting, evidence, strict=True):
                    findings = diagnose(found)
                    terminal = trackers[name].update(findings, now)
                    if terminal or now >= deadline:
                        readiness = evaluate_readiness(current[name])
                        messages[name], outcomes[name] = _failure_report(
                            current[name], readiness, findings, terminal, clock() - start, watch
                        )
                if not pending():
                    break
                next_check = now + settings.check_interval
            change = watch.next_change(until=min(deadline, next_check))
            if change is None:
                continue
            if change.type == "RELISTED":
                relisted = _select(change.objects or [], names)
                for name in pending():
                    if name in relisted:
                        current[name] = relisted[name]
                    else:
                        messages[name], outcomes[name] = _deleted(namespace, name, clock() - start, watch)
                continue
            name = (change.object.get("metadata") or {}).get("name")
            if name not in current or name in outcomes:
                continue
            if change.type == "DELETED":
                messages[name], outcomes[name] = _deleted(namespace, name, clock() - start, watch)
            else:
                current[name] = change.object
    finally:
        watch.close()

    results = [{"name": name, "namespace": namespace, **outcomes[name]} for name in order]
    for result in results:
        if result["name"] in messages:
            result["msg"] = messages[result["name"]]
        result.pop("watch", None)  # one watch for all: returned once
        if result["ready"]:  # all True, nothing to read: keeps a result over 100+ readable
            result.pop("conditions", None)
            result.pop("model_status", None)
    outcome = _many_outcome(results, elapsed=round(clock() - start, 3), watch=dict(watch.stats))
    if outcome["not_ready"]:
        raise WaitManyFailed(_many_message(namespace, results, messages), outcome)
    return outcome


def _deleted(namespace: str, name: str, elapsed: float, watch) -> tuple[str, dict]:
    return (
        f"InferenceService {namespace}/{name} was deleted while waiting for it to be Ready",
        {"ready": False, "elapsed": round(elapsed, 3), "watch": dict(watch.stats)},
    )


def _many_message(namespace: str, results: list[dict], messages: dict[str, str]) -> str:
    failed = [r for r in results if not r["ready"]]
    ready = [r["name"] for r in results if r["ready"]]
    lines = [
        f"{len(failed)} of {len(results)} InferenceServices in {namespace} are not Ready: "
        + ", ".join(r["name"] for r in failed)
        + (f" ({len(ready)} Ready)" if ready else "")
    ]
    for result in failed[:DETAILED_FAILURES]:
        lines += ["", messages[result["name"]]]
    if len(failed) > DETAILED_FAILURES:
        rest = [r["name"] for r in failed[DETAILED_FAILURES:]]
        lines += ["", f"... and {len(rest)} more not Ready (each one's msg in results): {', '.join(rest)}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- evidence


def collect_evidence(client, isvc: dict, log_lines: int) -> Evidence:
    """The InferenceService's pods, related Warning events and failing containers' last log lines.
    Read errors (e.g. RBAC) are reported as findings' text rather than failing the wait."""
    name = isvc["metadata"]["name"]
    return collect_evidence_many(client, [isvc], log_lines, pod_selector=f"{ISVC_POD_LABEL}={name}")[0]


def collect_evidence_many(client, isvcs: list[dict], log_lines: int, pod_selector=ISVC_POD_LABEL) -> list:
    """collect_evidence for InferenceServices of one namespace with one list of pods and one of events
    (an Evidence per InferenceService, in their order)."""
    namespace = isvcs[0]["metadata"]["namespace"]
    unreadable, pods, events = [], [], []
    try:
        listing = client.resource("Pod", "v1").get(namespace=namespace, label_selector=pod_selector)
        pods = listing.to_dict().get("items", [])
    except (DynamicApiError, HTTPError, OSError) as exc:
        unreadable.append(f"could not list pods: {exc}")
    try:
        events = client.resource("Event", "v1").get(namespace=namespace, limit=EVENT_LIMIT)
        events = events.to_dict().get("items", [])
    except (DynamicApiError, HTTPError, OSError) as exc:
        unreadable.append(f"could not list events: {exc}")
    found = []
    for isvc in isvcs:
        meta = isvc["metadata"]
        name = meta["name"]
        own = _current_pods(isvc, [p for p in pods if _labels(p).get(ISVC_POD_LABEL) == name])
        evidence = Evidence(isvc=isvc, pods=own, unreadable=list(unreadable))
        evidence.events += _related_events(events, name, own, meta.get("creationTimestamp"))
        evidence.logs = _failing_container_logs(client, own, log_lines)
        found.append(evidence)
    return found


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def _current_pods(isvc: dict, pods: list[dict]) -> list[dict]:
    """The pods of each component's latest created Knative revision, and pods of no revision (RawDeployment):
    a pod of an older revision that still crashes (a canary being rolled back, a revision being replaced)
    says nothing about the revision the InferenceService is waiting for."""
    components = ((isvc.get("status") or {}).get("components") or {}).values()
    latest = {c.get("latestCreatedRevision") for c in components if isinstance(c, dict)} - {None}

    def current(pod):
        revision = _labels(pod).get(REVISION_LABEL)
        return not latest or revision is None or revision in latest

    return [p for p in pods if current(p)]


def _related_events(events: list[dict], name: str, pods: list[dict], since: str | None = None) -> list[dict]:
    """Events of the InferenceService, its pods, and the objects KServe/Knative name after it; none last seen
    before `since` (its creationTimestamp): those are about a deleted InferenceService of the same name."""
    pod_names = {p["metadata"]["name"] for p in pods}
    prefixes = tuple(f"{name}-{c}" for c in ("predictor", "transformer", "explainer"))

    def related(event):
        obj = event.get("involvedObject") or {}
        other = obj.get("name", "")
        last_seen = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
        if since and last_seen and str(last_seen) < str(since):  # RFC 3339 strings (UTC) sort by time
            return False
        if obj.get("kind") == "Pod":  # only the current pods' (an older revision's pod may still crash)
            return other in pod_names
        return other == name or other.startswith(prefixes)

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
