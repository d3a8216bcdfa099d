"""What "Ready" means for a KServe InferenceService, and why one is not.

Pure functions over plain Kubernetes object dicts (as the API returns them): no I/O here.
Shapes follow KServe 0.14 / Knative 1.16 (see docs/modules.md).

- `evaluate_readiness(isvc)`: Ready for the *current* spec, or the list of things still missing.
- `summarize(isvc)`: the figures a playbook wants back (url, address, revisions, traffic, conditions).
- `diagnose(evidence)`: findings a human can act on, each marked terminal or not.
- `TerminalTracker`: decides when terminal findings have persisted long enough to stop waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COMPONENTS = ("predictor", "transformer", "explainer")
COMPONENT_CONDITION = {
    "predictor": "PredictorReady",
    "transformer": "TransformerReady",
    "explainer": "ExplainerReady",
}
REVISION_FIELDS = (
    "latestCreatedRevision",
    "latestReadyRevision",
    "latestRolledoutRevision",
    "previousRolledoutRevision",
)
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
EXEC_FORMAT_ERROR = "exec format error"
INVALID_SPEC_REASONS = (
    "RuntimeNotRecognized",
    "NoSupportingRuntime",
    "RuntimeDisabled",
    "InvalidPredictorSpec",
)
OOM_RESTARTS_BEFORE_TERMINAL = 2
# Knative's revision status once the user container has exited with an error (its ContainerExitingMessage):
# the evidence KServe's modelStatus reports as ModelLoadFailed, read by Knative when it happens (KServe reads
# it only at its own reconciles, and writes Pending again at one that finds the container restarting). While
# pods of the revision crash-loop it may still heal; once Knative has scaled the failed revision to zero
# (its progress deadline passed) nothing retries it without a change.
CONTAINER_FAILED = "Container failed with: "

HINTS = {
    "unschedulable": "no node can run the pod: lower the predictor's resources.requests, add capacity, "
    "or fix the PersistentVolumeClaim / node selector named in the message",
    "image_pull": "the image cannot be pulled: check the image name and tag, imagePullSecrets, and that "
    "the nodes can reach the registry",
    "exec_format": "the image was built for another CPU architecture than the node "
    "(KServe 0.14.1's huggingfaceserver image is amd64 only): use a multi-arch image or an amd64 node",
    "hf_storage_uri": "KServe < 0.15 does not support hf:// storageUri: upgrade KServe to 0.15+, or drop "
    "storageUri and pass --model_id=<hub id> in the huggingface runtime args",
    "invalid_spec": "no ServingRuntime serves this model: check modelFormat / runtime names and that the "
    "runtime is installed and not disabled",
    "invalid_deployment": "Knative cannot create the predictor's Deployment from this spec (the API server's "
    "reason is in the message): where a predictor gives no limits, KServe sets 1 CPU / 2Gi, so requests "
    "above that need limits of their own",
    "failed_load": "the model failed to load (its container exited with an error): see the message "
    "(KServe's lastFailureInfo or Knative's revision status) and the container logs below",
    "crash_loop": "the model server exits at start-up: see its last log lines",
    "oom": "the container was OOMKilled: raise the predictor's memory limit",
    "ingress": "the ingress (Istio gateway / net-istio) has not configured the route yet",
    "node_not_ready": "the pod's node stopped reporting (NotReady): check `kubectl get nodes`, its kubelet",
    "pod_not_ready": "the model server runs but does not pass its readiness probe yet (still loading?)",
    "no_status": "the KServe controller has not reported any status: is it running, and are its "
    "webhooks serving?",
}


# --------------------------------------------------------------------------- helpers


def _get(obj, *path, default=None):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj if obj is not None else default


def condition(obj: dict, type_: str) -> dict | None:
    """The condition of that type in obj.status.conditions (or None)."""
    for cond in _get(obj, "status", "conditions", default=[]):
        if cond.get("type") == type_:
            return cond
    return None


def describe_condition(cond: dict) -> str:
    text = f"{cond.get('type')}={cond.get('status', 'Unknown')}"
    if cond.get("reason"):
        text += f" ({cond['reason']})"
    if cond.get("message"):
        text += f": {cond['message']}"
    return text


def components_in_spec(isvc: dict) -> list[str]:
    """predictor always; transformer and explainer when the spec has them."""
    spec = isvc.get("spec") or {}
    return [c for c in COMPONENTS if c == "predictor" or spec.get(c)]


def full_name(isvc: dict) -> str:
    meta = isvc.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def storage_uris(isvc: dict) -> list[str]:
    """Every storageUri in the spec (model, legacy framework fields, any component)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "storageUri" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(isvc.get("spec") or {})
    return found


# --------------------------------------------------------------------------- readiness


@dataclass
class Readiness:
    ready: bool
    waiting_for: list[str] = field(default_factory=list)


def evaluate_readiness(isvc: dict) -> Readiness:
    """Ready for the current spec: generation observed, Ready=True, every component ready on its latest
    revision. Otherwise `waiting_for` says what is missing, in the user's words."""
    waiting = []
    meta = isvc.get("metadata") or {}
    status = isvc.get("status") or {}
    if meta.get("deletionTimestamp"):
        waiting.append("the InferenceService is being deleted")
    if not status:
        return Readiness(False, [*waiting, "no status yet: the KServe controller has not reconciled it"])

    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        waiting.append(
            f"status is for an older spec: status.observedGeneration={observed} < "
            f"metadata.generation={generation} (the controller has not processed the current spec yet)"
        )

    for type_ in ["Ready", *(COMPONENT_CONDITION[c] for c in components_in_spec(isvc))]:
        cond = condition(isvc, type_)
        if cond is None:
            waiting.append(f"condition {type_} not reported yet")
        elif cond.get("status") != "True":
            waiting.append("condition " + describe_condition(cond))

    for component in components_in_spec(isvc):
        revisions = _get(status, "components", component, default={})
        created, ready = revisions.get("latestCreatedRevision"), revisions.get("latestReadyRevision")
        if created and created != ready:
            waiting.append(
                f"{component}: latest revision {created} is not ready yet (latest ready revision: {ready})"
            )
    return Readiness(not waiting, waiting)


def summarize(isvc: dict) -> dict:
    """Return values of the wait: where to reach the service and what serves it."""
    status = isvc.get("status") or {}
    meta = isvc.get("metadata") or {}
    components = status.get("components") or {}
    return {
        "url": status.get("url"),
        "address": _get(status, "address", "url"),
        "generation": meta.get("generation"),
        "observed_generation": status.get("observedGeneration"),
        "revisions": {
            name: {key: comp.get(key) for key in REVISION_FIELDS if comp.get(key)}
            for name, comp in components.items()
        },
        "traffic": {name: comp.get("traffic") or [] for name, comp in components.items()},
        "component_urls": {name: comp.get("url") for name, comp in components.items() if comp.get("url")},
        "conditions": status.get("conditions") or [],
        "model_status": status.get("modelStatus") or {},
    }


# --------------------------------------------------------------------------- diagnosis


@dataclass
class Finding:
    """One thing wrong, in words a human can act on. `kind` + `subject` identify it across checks."""

    kind: str
    subject: str
    message: str
    terminal: bool = False
    details: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.subject)

    @property
    def hint(self) -> str:
        return HINTS.get(self.kind, "")

    def render(self, with_hint: bool = True) -> str:
        lines = [self.message]
        lines += [f"    {line}" for line in self.details]
        if with_hint and self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class Evidence:
    """What the cluster says about one InferenceService: the object, its pods, related events, and the
    last log lines of failing containers keyed by (pod, container)."""

    isvc: dict
    pods: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # what could not be read (e.g. RBAC)


def diagnose(evidence: Evidence) -> list[Finding]:
    findings = [
        *_status_findings(evidence.isvc, pods_left=bool(evidence.pods or evidence.unreadable)),
        *_pod_findings(evidence.pods, evidence.logs),
        *_event_findings(evidence.isvc, evidence.events),
        *(Finding("unreadable", text, f"diagnosis incomplete: {text}") for text in evidence.unreadable),
    ]
    if any(f.kind == "hf_storage_uri" for f in findings):  # explains the missing status better
        findings = [f for f in findings if f.kind != "no_status"]
    return _dedupe(findings)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, unique = set(), []
    for finding in findings:
        if finding.key in seen:
            continue
        seen.add(finding.key)
        unique.append(finding)
    return unique


def _status_findings(isvc: dict, pods_left: bool) -> list[Finding]:
    status = isvc.get("status") or {}
    if not status:
        return [Finding("no_status", "status", "the InferenceService has no status at all")]
    same_cause: dict[tuple, list[dict]] = {}  # Knative copies one cause onto several conditions
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            same_cause.setdefault((cond.get("status"), cond.get("reason"), cond.get("message")), []).append(
                cond
            )
    findings = [_condition_finding(group, pods_left) for group in same_cause.values()]
    findings += _model_status_findings(status.get("modelStatus") or {})
    return findings


def _condition_finding(group: list[dict], pods_left: bool) -> Finding:
    """One finding for conditions that share status, reason and message (`pods_left`: the latest revision
    still has pods)."""
    cond = {**group[0], "type": ", ".join(c.get("type", "?") for c in group)}
    reason, message = cond.get("reason") or "", cond.get("message") or ""
    text = ("conditions " if len(group) > 1 else "condition ") + describe_condition(cond)
    subject = f"condition/{cond['type']}"
    if EXEC_FORMAT_ERROR in message:
        return Finding("exec_format", subject, text, terminal=True)
    if reason == "ContainerMissing" or any(r in message for r in IMAGE_PULL_REASONS):
        return Finding("image_pull", subject, text, terminal=True)
    if reason == "Unschedulable":
        return Finding("unschedulable", subject, text, terminal=True)
    if reason in INVALID_SPEC_REASONS:
        return Finding("invalid_spec", subject, text, terminal=True)
    if reason == "RevisionFailed" and CONTAINER_FAILED in message and not pods_left:
        return Finding("failed_load", subject, f"{text} (no pod of the revision is left to retry)", True)
    if reason == "IngressNotConfigured":
        return Finding("ingress", subject, text)
    return Finding("condition", subject, text)


def _model_status_findings(model_status: dict) -> list[Finding]:
    transition = model_status.get("transitionStatus")
    failure = model_status.get("lastFailureInfo") or {}
    details = []
    if failure:
        details.append(
            "lastFailureInfo: "
            + ", ".join(f"{k}={failure[k]}" for k in ("reason", "location", "exitCode") if failure.get(k))
        )
        if failure.get("message"):
            details.append(f"message: {failure['message']}")
    if transition == "InvalidSpec":
        return [
            Finding("invalid_spec", "modelStatus", "modelStatus.transitionStatus=InvalidSpec", True, details)
        ]
    state = _get(model_status, "states", "activeModelState")
    if transition == "BlockedByFailedLoad" or state == "FailedToLoad":
        return [
            Finding(
                "failed_load",
                "modelStatus",
                f"model failed to load (transitionStatus={transition}, activeModelState={state})",
                True,
                details,
            )
        ]
    return []


def _pod_findings(pods: list[dict], logs: dict[tuple[str, str], str]) -> list[Finding]:
    findings = []
    for pod in pods:
        name = _get(pod, "metadata", "name", default="?")
        phase = _get(pod, "status", "phase", default="Unknown")
        scheduled = condition(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False":
            findings.append(
                Finding(
                    "unschedulable",
                    f"pod/{name}",
                    f"pod {name}: {phase}, not scheduled: {describe_condition(scheduled)}",
                    terminal=scheduled.get("reason") == "Unschedulable",
                )
            )
        statuses = [
            *(_get(pod, "status", "initContainerStatuses", default=[])),
            *(_get(pod, "status", "containerStatuses", default=[])),
        ]
        about_pod = len(findings)
        for container in statuses:
            finding = _container_finding(name, phase, container, logs.get((name, container.get("name"))))
            if finding:
                findings.append(finding)
        ready = condition(pod, "Ready")
        if len(findings) == about_pod and phase == "Running" and ready and ready.get("status") != "True":
            kind = "node_not_ready" if ready.get("reason") == "NodeNotReady" else "pod_not_ready"
            findings.append(Finding(kind, f"pod/{name}", f"pod {name}: Running, {describe_condition(ready)}"))
    return findings


def _container_finding(pod: str, phase: str, container: dict, log_tail: str | None) -> Finding | None:
    cname = container.get("name", "?")
    subject = f"pod/{pod}/{cname}"
    state = container.get("state") or {}
    last = _get(container, "lastState", "terminated", default={})
    restarts = container.get("restartCount") or 0
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    prefix = f"pod {pod} ({phase}), container {cname}"

    details = []
    if last:
        details.append(
            f"last termination: reason={last.get('reason')}, exitCode={last.get('exitCode')}"
            + (f", message: {last['message'].strip()}" if last.get("message") else "")
        )
    if log_tail:
        details.append("last log lines:")
        details += [f"  {line}" for line in log_tail.rstrip().splitlines()]

    texts = " ".join(
        str(x or "")
        for x in (waiting.get("message"), terminated.get("message"), last.get("message"), log_tail)
    )
    if EXEC_FORMAT_ERROR in texts:
        return Finding("exec_format", subject, f"{prefix}: exec format error", True, details)
    if waiting.get("reason") in IMAGE_PULL_REASONS:
        message = f"{prefix}: {waiting['reason']}"
        if waiting.get("message"):
            message += f": {waiting['message']}"
        return Finding("image_pull", subject, message, True, details)
    if last.get("reason") == "OOMKilled" or terminated.get("reason") == "OOMKilled":
        return Finding(
            "oom",
            subject,
            f"{prefix}: OOMKilled ({restarts} restarts)",
            restarts >= OOM_RESTARTS_BEFORE_TERMINAL,
            details,
        )
    if waiting.get("reason") == "CrashLoopBackOff" or (terminated and terminated.get("exitCode")):
        return Finding(
            "crash_loop", subject, f"{prefix}: crash-looping ({restarts} restarts)", False, details
        )
    if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
        message = f"{prefix}: waiting ({waiting['reason']})"
        if waiting.get("message"):
            message += f": {waiting['message']}"
        return Finding("container", subject, message, False, details)
    return None


def _event_findings(isvc: dict, events: list[dict]) -> list[Finding]:
    hf_uris = [u for u in storage_uris(isvc) if u.startswith("hf://")]
    findings = []
    for event in sorted(events, key=_event_time):
        reason, message = event.get("reason") or "", event.get("message") or ""
        obj = event.get("involvedObject") or {}
        subject = f"{(obj.get('kind') or '?').lower()}/{obj.get('name', '?')}"
        text = f"event {reason} on {subject}: {message}"
        count = event.get("count") or _get(event, "series", "count")
        if count and count > 1:
            text += f" (x{count})"
        if "StorageURI not supported" in message or (hf_uris and "not supported" in message):
            findings.append(Finding("hf_storage_uri", subject, text, True))
        elif "failed to create deployment" in message and " is invalid: " in message:
            findings.append(Finding("invalid_deployment", subject, text, True))
        elif EXEC_FORMAT_ERROR in message:
            findings.append(Finding("exec_format", subject, text, True))
        elif reason == "NodeNotReady":
            findings.append(Finding("node_not_ready", subject, text))
        elif event.get("type") == "Warning":
            findings.append(Finding("event", f"{subject}/{reason}/{_normalize(message)}", text))
    if hf_uris and not any(f.kind == "hf_storage_uri" for f in findings) and not isvc.get("status"):
        findings.append(
            Finding(
                "hf_storage_uri",
                "spec",
                f"storageUri {hf_uris[0]} uses hf:// and the controller reports no status "
                "(KServe < 0.15 rejects hf:// with an InternalError event only)",
            )
        )
    return findings


def _event_time(event: dict) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""


def _normalize(message: str) -> str:
    """Group repeated events whose text differs only in numbers (pod hashes, counts)."""
    return re.sub(r"\d+", "N", message)[:120]


# --------------------------------------------------------------------------- terminal decision


class TerminalTracker:
    """Remembers when each terminal finding was first seen; a failure is declared once one has persisted
    `grace` seconds (grace=None: never, wait until the timeout)."""

    def __init__(self, grace: float | None):
        self.grace = grace
        self.first_seen: dict[tuple[str, str], float] = {}

    def update(self, findings: list[Finding], now: float) -> list[Finding]:
        """Record findings seen at `now`; return the terminal ones that have outlived the grace period."""
        current = {f.key for f in findings if f.terminal}
        self.first_seen = {k: t for k, t in self.first_seen.items() if k in current}
        for key in current:
            self.first_seen.setdefault(key, now)
        if self.grace is None:
            return []
        return [f for f in findings if f.terminal and now - self.first_seen[f.key] >= self.grace]


def render_findings(findings: list[Finding]) -> str:
    """Findings one per item, then each distinct hint once."""
    lines = [f"- {finding.render(with_hint=False)}" for finding in findings]
    hints = list(dict.fromkeys(f.hint for f in findings if f.hint))
    if hints:
        lines.append("hints:")
        lines += [f"- {hint}" for hint in hints]
    return "\n".join(lines)
