"""What the readiness wait considers Ready, and the diagnosis it gives when an InferenceService is not.

Fixtures are real KServe 0.14 / Knative 1.16 / kubelet object shapes (tests/unit/fixtures/).
"""

import pathlib

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils.isvc_status import (
    HINTS,
    Evidence,
    Finding,
    TerminalTracker,
    diagnose,
    evaluate_readiness,
    render_findings,
    summarize,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def isvc(name: str) -> dict:
    return yaml.safe_load((FIXTURES / "isvc" / f"{name}.yaml").read_text())


def evidence(name: str) -> Evidence:
    data = yaml.safe_load((FIXTURES / "evidence" / f"{name}.yaml").read_text())
    logs = {tuple(key.split("/")): text for key, text in (data.get("logs") or {}).items()}
    return Evidence(
        isvc=data["isvc"], pods=data.get("pods") or [], events=data.get("events") or [], logs=logs
    )


# --------------------------------------------------------------------------- readiness


def test_ready_inference_service_is_ready():
    readiness = evaluate_readiness(isvc("ready"))
    assert readiness.ready
    assert readiness.waiting_for == []


def test_ready_status_of_an_older_spec_is_not_ready():
    readiness = evaluate_readiness(isvc("ready_for_older_spec"))
    assert not readiness.ready
    assert readiness.waiting_for == [
        "status is for an older spec: status.observedGeneration=1 < metadata.generation=2 "
        "(the controller has not processed the current spec yet)"
    ]


def test_missing_observed_generation_counts_as_not_observed():
    obj = isvc("ready")
    del obj["status"]["observedGeneration"]
    assert not evaluate_readiness(obj).ready


def test_new_revision_still_rolling_out_is_not_ready():
    readiness = evaluate_readiness(isvc("rolling_out"))
    assert not readiness.ready
    assert any("condition Ready=Unknown (RevisionMissing)" in w for w in readiness.waiting_for)
    assert (
        "predictor: latest revision bert-sentiment-predictor-00002 is not ready yet "
        "(latest ready revision: bert-sentiment-predictor-00001)"
    ) in readiness.waiting_for


def test_transformer_in_spec_must_be_ready_too():
    readiness = evaluate_readiness(isvc("transformer_not_ready"))
    assert not readiness.ready
    assert readiness.waiting_for[0].startswith("condition TransformerReady=False (RevisionMissing)")
    assert (
        "transformer: latest revision bert-sentiment-transformer-00001 is not ready yet"
        in readiness.waiting_for[1]
    )


def test_no_status_is_not_ready():
    readiness = evaluate_readiness(isvc("hf_no_status"))
    assert not readiness.ready
    assert readiness.waiting_for == ["no status yet: the KServe controller has not reconciled it"]


def test_inference_service_being_deleted_is_not_ready():
    readiness = evaluate_readiness(isvc("deleting"))
    assert not readiness.ready
    assert readiness.waiting_for == ["the InferenceService is being deleted"]


def test_summary_has_urls_revisions_and_traffic():
    summary = summarize(isvc("ready"))
    assert summary["url"] == "http://bert-sentiment.models.127.0.0.1.sslip.io"
    assert summary["address"] == "http://bert-sentiment.models.svc.cluster.local"
    assert summary["revisions"] == {
        "predictor": {
            "latestCreatedRevision": "bert-sentiment-predictor-00001",
            "latestReadyRevision": "bert-sentiment-predictor-00001",
            "latestRolledoutRevision": "bert-sentiment-predictor-00001",
        }
    }
    assert summary["traffic"]["predictor"] == [
        {"revisionName": "bert-sentiment-predictor-00001", "percent": 100, "latestRevision": True}
    ]
    assert summary["generation"] == summary["observed_generation"] == 1
    assert summary["model_status"]["transitionStatus"] == "UpToDate"


# --------------------------------------------------------------------------- diagnosis


@pytest.mark.parametrize(
    ("case", "kind", "terminal", "text"),
    [
        ("unschedulable", "unschedulable", True, "0/1 nodes are available: 1 Insufficient cpu."),
        ("unbound_pvc", "unschedulable", True, "pod has unbound immediate PersistentVolumeClaims"),
        (
            "image_pull",
            "image_pull",
            True,
            'ImagePullBackOff: Back-off pulling image "kserve/sklearnserver:v9.9.9"',
        ),
        (
            "container_missing",
            "image_pull",
            True,
            'Unable to fetch image "registry.example.com/private/model:1"',
        ),
        ("exec_format", "exec_format", True, "exec format error"),
        ("hf_storage_uri", "hf_storage_uri", True, "StorageURI not supported"),
        ("deployment_invalid", "invalid_deployment", True, "must be less than or equal to cpu limit of 1"),
        ("invalid_spec", "invalid_spec", True, "NoSupportingRuntime"),
        ("oom", "oom", True, "OOMKilled (3 restarts)"),
        ("crash_loop", "crash_loop", False, "crash-looping (3 restarts)"),
        ("revision_failed", "failed_load", True, "model directory /mnt/models/not-there does not exist"),
        ("ingress_pending", "ingress", False, "Ingress has not yet been reconciled."),
        ("node_not_ready", "node_not_ready", False, "Running, Ready=False (NodeNotReady)"),
    ],
)
def test_diagnosis_names_the_cause(case, kind, terminal, text):
    findings = diagnose(evidence(case))
    matching = [f for f in findings if f.kind == kind]
    assert matching, render_findings(findings)
    assert any(text in f.message for f in matching), render_findings(findings)
    assert any(f.terminal for f in findings) is terminal
    assert HINTS.get(kind, "") in render_findings(findings)


def test_a_failed_revision_is_terminal_only_once_no_pod_is_left_to_retry():
    failed = evidence("revision_failed")
    crashing_pod = evidence("crash_loop").pods[0]
    still_retrying = Evidence(isvc=failed.isvc, pods=[crashing_pod])
    assert not any(f.terminal for f in diagnose(still_retrying))
    [finding] = [f for f in diagnose(failed) if f.terminal]
    assert finding.message.endswith("(no pod of the revision is left to retry)")


def test_crash_loop_diagnosis_shows_the_last_log_lines():
    report = render_findings(diagnose(evidence("crash_loop")))
    assert "last termination: reason=Error, exitCode=1" in report
    assert "ModuleNotFoundError: No module named 'transformers'" in report


def test_exec_format_error_found_in_logs_of_a_crash_looping_container():
    container = "pod/hf-sentiment-predictor-00001-deployment-64f8d-9xk4m/kserve-container"
    pod_findings = [f for f in diagnose(evidence("exec_format")) if f.subject == container]
    assert [f.kind for f in pod_findings] == ["exec_format"]
    assert "exec /usr/local/bin/python: exec format error" in pod_findings[0].render()


def test_hf_storage_uri_without_event_still_explained():
    case = evidence("hf_storage_uri")
    case.events = []
    findings = diagnose(case)
    hf = [f for f in findings if f.kind == "hf_storage_uri"]
    assert hf and "hf://distilbert" in hf[0].message
    assert "--model_id" in hf[0].render()


def test_invalid_spec_shows_last_failure_info():
    report = render_findings(diagnose(evidence("invalid_spec")))
    assert "lastFailureInfo: reason=NoSupportingRuntime" in report
    assert "No runtime found to support predictor with model type: {onnx-but-misspelt <nil>}" in report


def test_repeated_events_are_reported_once_with_their_count():
    case = evidence("image_pull")
    case.events.append(dict(case.events[0]))
    findings = [f for f in diagnose(case) if f.kind == "event"]
    assert len(findings) == 2  # "Failed to pull image ..." and "Error: ErrImagePull"


def test_event_count_is_shown():
    findings = diagnose(evidence("unschedulable"))
    assert any(f.kind == "event" and f.message.endswith("(x3)") for f in findings)


def test_unreadable_evidence_is_said():
    case = evidence("crash_loop")
    case.unreadable.append("could not list events: (403) Forbidden")
    assert "diagnosis incomplete: could not list events: (403) Forbidden" in render_findings(diagnose(case))


# --------------------------------------------------------------------------- terminal decision


def finding(terminal=True, subject="pod/p1"):
    return Finding("unschedulable", subject, "pod p1: Pending", terminal=terminal)


def test_terminal_failure_declared_only_after_grace():
    tracker = TerminalTracker(grace=15)
    assert tracker.update([finding()], now=100) == []
    assert tracker.update([finding()], now=110) == []
    assert [f.subject for f in tracker.update([finding()], now=115)] == ["pod/p1"]


def test_terminal_failure_that_clears_restarts_the_grace_period():
    tracker = TerminalTracker(grace=15)
    tracker.update([finding()], now=100)
    tracker.update([], now=105)
    assert tracker.update([finding()], now=116) == []
    assert tracker.update([finding()], now=131) != []


def test_zero_grace_fails_at_first_sight_and_none_never():
    assert TerminalTracker(grace=0).update([finding()], now=1)
    assert TerminalTracker(grace=None).update([finding()], now=1e9) == []


def test_non_terminal_findings_never_end_the_wait():
    tracker = TerminalTracker(grace=0)
    assert tracker.update([finding(terminal=False)], now=1) == []


def test_conditions_with_one_cause_are_reported_once():
    messages = [f.message for f in diagnose(evidence("unschedulable")) if f.subject.startswith("condition/")]
    assert messages[0] == "condition PredictorConfigurationReady=Unknown"
    assert messages[1].startswith(
        "conditions PredictorReady, Ready=False (Unschedulable): 0/1 nodes are available"
    )
    assert len(messages) == 2


def test_events_of_a_deleted_inference_service_of_the_same_name_are_left_out():
    from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_isvc import _related_events

    def warning(name, last):
        return {"type": "Warning", "involvedObject": {"name": name}, "lastTimestamp": last, "message": last}

    events = [
        warning("greedy-predictor-00001", "2026-12-02T01:30:00Z"),  # about the one deleted before
        warning("greedy-predictor-00001", "2026-12-02T01:34:40Z"),
        warning("greedy", "2026-12-02T01:34:00Z"),
        warning("other-predictor-00001", "2026-12-02T01:35:00Z"),
    ]
    chosen = _related_events(events, "greedy", [], since="2026-12-02T01:34:00Z")
    assert [e["message"] for e in chosen] == ["2026-12-02T01:34:00Z", "2026-12-02T01:34:40Z"]


def test_pods_and_pod_events_of_an_older_revision_are_left_out():
    """A canary rolled back: its revision's pod still crashes (exec format error), the InferenceService now
    waits for a newer revision: that crash must not end the wait as a terminal failure."""
    from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_isvc import (
        _current_pods,
        _related_events,
    )

    def pod(name, revision=None):
        labels = {"serving.kserve.io/inferenceservice": "m"}
        if revision:
            labels["serving.knative.dev/revision"] = revision
        return {"metadata": {"name": name, "labels": labels}}

    status = {"components": {"predictor": {"latestCreatedRevision": "m-predictor-00003"}}}
    old, new, raw = pod("old", "m-predictor-00002"), pod("new", "m-predictor-00003"), pod("raw")
    assert _current_pods({"status": status}, [old, new, raw]) == [new, raw]
    assert _current_pods({"status": {}}, [old, new]) == [old, new]  # no revision known yet: all of them

    crash = {
        "type": "Warning",
        "reason": "BackOff",
        "involvedObject": {"kind": "Pod", "name": "old"},
        "message": "exec format error",
    }
    revision = {"type": "Warning", "involvedObject": {"kind": "Revision", "name": "m-predictor-00003"}}
    assert _related_events([crash, revision], "m", [new]) == [revision]
