"""Many InferenceServices at once (issue #21): the readiness wait over a namespace with one watch
(k8s_isvc.wait_for_inference_services, k8s_watch.CollectionWatch), the inline objects and generations of
k8s_manifest_set, its no-retry mode for the roles' `until:` loops, and the models role's filters.

The Kubernetes client is a stand-in for the kubernetes library's dynamic client (the part our code calls:
resource lists, the watch stream), driven by a clock the test moves."""

from __future__ import annotations

import json

import pytest
from ansible_collections.kserve_ansible.serving.plugins.filter.models_rollout import (
    models_by_namespace,
    models_changes,
    models_probe_figures,
    models_select,
    models_smoke_probes,
    models_smoke_problems,
    models_spec_changes,
)
from ansible_collections.kserve_ansible.serving.plugins.module_utils import k8s_api, manifests
from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_apply import Applier
from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_isvc import (
    WaitManyFailed,
    WaitSettings,
    read_readiness_many,
    wait_for_inference_services,
)
from ansible_collections.kserve_ansible.serving.plugins.test.webhooks import webhook_not_ready

from tests.unit.test_webhooks import NO_ENDPOINTS, DynamicClient, K8SClient, Resource

NAMESPACE = "models"
UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient cpu."


def isvc(name, ready=True, generation=1, labels=None):
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "generation": generation,
            "resourceVersion": "5",
            "labels": labels or {},
        },
        "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}}}},
    }
    if ready is None:
        return obj  # no status yet
    status = "True" if ready else "False"
    revision = f"{name}-predictor-00001"
    obj["status"] = {
        "observedGeneration": generation,
        "url": f"http://{name}.{NAMESPACE}.example.com",
        "conditions": [
            {"type": "Ready", "status": status, **({} if ready else {"reason": "RevisionMissing"})},
            {"type": "PredictorReady", "status": status},
        ],
        "components": {
            "predictor": {
                "latestCreatedRevision": revision,
                "latestReadyRevision": revision if ready else None,
                "traffic": [{"revisionName": revision, "percent": 100, "latestRevision": True}],
            }
        },
    }
    return obj


def unschedulable_pod(owner):
    return {
        "metadata": {
            "name": f"{owner}-predictor-00001-deployment-abc",
            "namespace": NAMESPACE,
            "labels": {"serving.kserve.io/inferenceservice": owner},
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": UNSCHEDULABLE,
                }
            ],
        },
    }


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Listing:
    def __init__(self, items, version="10"):
        self.items, self.version = items, version

    def to_dict(self):
        return {"metadata": {"resourceVersion": self.version}, "items": self.items}


class Stream:
    """A watch response: the scripted events as JSON lines, then the end of the window."""

    def __init__(self, events):
        self.lines = [json.dumps({"type": kind, "object": obj}).encode() + b"\n" for kind, obj in events]

    def stream(self, amt=None, decode_content=False):
        yield from self.lines

    def close(self):
        pass

    def release_conn(self):
        pass


class ApiServer:
    """What our code asks of kubernetes.core's client: resources (list reads) and, through
    `client.client.request`, watches. A watch window without scripted events lasts until its timeout."""

    def __init__(self, clock, isvcs, pods=(), events=()):
        self.clock, self.isvcs, self.pods = clock, list(isvcs), list(pods)
        self.watch_events = list(events)
        self.watches, self.lists = [], []
        self.client = self  # K8SClient.client is the dynamic client

    def resource(self, kind, api_version):
        return FakeResource(self, kind)

    def request(self, method, path, watch=False, timeout_seconds=1, **params):
        assert method == "get" and watch
        self.watches.append(params)
        if self.watch_events:
            events, self.watch_events = self.watch_events, []
            return Stream(events)
        self.clock.now += timeout_seconds
        return Stream([])


class FakeResource:
    namespaced = True

    def __init__(self, server, kind):
        self.server, self.kind = server, kind

    def path(self, name=None, namespace=None):
        return f"/apis/test/namespaces/{namespace}/{self.kind.lower()}s"

    def get(self, name=None, namespace=None, label_selector=None, **params):
        self.server.lists.append((self.kind, namespace, label_selector))
        if self.kind == "InferenceService":
            items = [i for i in self.server.isvcs if i["metadata"]["namespace"] == namespace]
            if label_selector:
                key, value = label_selector.split("=")
                items = [i for i in items if i["metadata"]["labels"].get(key) == value]
            return Listing(items)
        return Listing(self.server.pods if self.kind == "Pod" else [])


SETTINGS = WaitSettings(timeout=60, terminal_grace=0, check_interval=5, log_lines=0)


def test_one_failing_among_many_is_reported_with_its_diagnosis_and_the_others_as_ready():
    clock = Clock()
    later = isvc("b", ready=True)
    server = ApiServer(
        clock,
        [isvc("a"), isvc("b", ready=None), isvc("c", ready=False), isvc("other")],
        pods=[unschedulable_pod("c")],
        events=[("MODIFIED", isvc("other", ready=False)), ("MODIFIED", later)],
    )
    with pytest.raises(WaitManyFailed) as failure:
        wait_for_inference_services(server, NAMESPACE, SETTINGS, names=["a", "b", "c"], clock=clock)
    result = failure.value.result
    assert [(r["name"], r["ready"]) for r in result["results"]] == [("a", True), ("b", True), ("c", False)]
    assert result["not_ready"] == ["c"]
    failed = result["results"][2]
    assert failed["failure_kinds"] == ["unschedulable"] and failed["terminal"]
    assert UNSCHEDULABLE in failed["msg"] and "hint: " not in failed["msg"]
    assert result["results"][1]["url"] == "http://b.models.example.com"
    message = str(failure.value)
    assert message.startswith("1 of 3 InferenceServices in models are not Ready: c (2 Ready)")
    assert "InferenceService models/c cannot become Ready without a change" in message
    assert UNSCHEDULABLE in message
    # one watch over the namespace, one list of InferenceServices, one read of pods and events per check
    assert len(server.watches) == 1 and "field_selector" not in server.watches[0]
    assert [kind for kind, _, _ in server.lists] == ["InferenceService", "Pod", "Event"]


def test_all_ready_at_once_costs_one_list_and_no_watch():
    clock = Clock()
    server = ApiServer(clock, [isvc(f"m{i:03d}") for i in range(100)])
    outcome = wait_for_inference_services(server, NAMESPACE, SETTINGS, names=None, clock=clock)
    assert outcome["ready"] and outcome["not_ready"] == [] and len(outcome["results"]) == 100
    assert server.watches == [] and [kind for kind, _, _ in server.lists] == ["InferenceService"]


def test_a_label_selector_chooses_the_inference_services_and_the_watch():
    clock = Clock()
    team = {"team": "search"}
    server = ApiServer(
        clock,
        [isvc("a", ready=None, labels=team), isvc("b", ready=False)],
        events=[("MODIFIED", isvc("a", labels=team))],
    )
    outcome = wait_for_inference_services(
        server, NAMESPACE, SETTINGS, label_selector="team=search", clock=clock
    )
    assert [(r["name"], r["ready"]) for r in outcome["results"]] == [("a", True)]
    assert server.watches[0]["label_selector"] == "team=search"


def test_missing_and_deleted_inference_services_fail_and_the_others_still_get_ready():
    clock = Clock()
    server = ApiServer(
        clock,
        [isvc("a", ready=None), isvc("gone", ready=None)],
        events=[("DELETED", isvc("gone", ready=None)), ("MODIFIED", isvc("a"))],
    )
    with pytest.raises(WaitManyFailed) as failure:
        wait_for_inference_services(server, NAMESPACE, SETTINGS, names=["a", "gone", "typo"], clock=clock)
    results = {r["name"]: r for r in failure.value.result["results"]}
    assert results["a"]["ready"]
    assert (
        results["gone"]["msg"] == "InferenceService models/gone was deleted while waiting for it to be Ready"
    )
    assert (
        results["typo"]["msg"]
        == "InferenceService models/typo not found; InferenceServices in models: a, gone"
    )


def test_a_timeout_reports_what_each_one_still_waits_for():
    clock = Clock()
    server = ApiServer(clock, [isvc("a"), isvc("slow", ready=None)])
    settings = WaitSettings(timeout=12, terminal_grace=None, check_interval=5, log_lines=0)
    with pytest.raises(WaitManyFailed) as failure:
        wait_for_inference_services(server, NAMESPACE, settings, names=["a", "slow"], clock=clock)
    slow = failure.value.result["results"][1]
    assert not slow["terminal"]
    assert "InferenceService models/slow is not Ready after 12s (timeout)" in slow["msg"]
    assert slow["waiting_for"] == ["no status yet: the KServe controller has not reconciled it"]


def test_a_mass_failure_explains_the_first_ten_and_names_the_rest():
    clock = Clock()
    server = ApiServer(clock, [isvc(f"m{i:02d}", ready=None) for i in range(12)])
    settings = WaitSettings(timeout=6, terminal_grace=None, check_interval=5, log_lines=0)
    with pytest.raises(WaitManyFailed) as failure:
        wait_for_inference_services(server, NAMESPACE, settings, clock=clock)
    message = str(failure.value)
    assert message.count("is not Ready after") == 10
    assert message.endswith("... and 2 more not Ready (each one's msg in results): m10, m11")
    assert all("is not Ready after" in result["msg"] for result in failure.value.result["results"])


def test_check_mode_reads_once_and_reports_each():
    server = ApiServer(Clock(), [isvc("a"), isvc("b", ready=False)])
    outcome = read_readiness_many(server, NAMESPACE, names=["a", "b", "new"])
    assert [(r["name"], r["ready"]) for r in outcome["results"]] == [
        ("a", True),
        ("b", False),
        ("new", False),
    ]
    assert outcome["not_ready"] == ["b", "new"] and server.watches == []


# ----- k8s_manifest_set: inline objects, generations, no retry for callers that retry themselves --------


def test_inline_objects_are_checked_and_copied():
    definition = isvc("a", ready=None)
    [copy] = manifests.inline_objects([definition])
    assert copy == definition and copy is not definition
    with pytest.raises(manifests.ManifestError, match=r"without metadata\.name"):
        manifests.inline_objects([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}])


def test_a_result_says_whether_the_generation_moves():
    before, after = isvc("a", ready=None, generation=3), isvc("a", ready=None, generation=4)
    entry = manifests.ObjectResult(isvc("a", ready=None), "updated", before=before, after=after).as_dict()
    assert (entry["previous_generation"], entry["generation"]) == (3, 4)
    created = manifests.ObjectResult(isvc("a", ready=None), "created", after=after).as_dict()
    assert "previous_generation" not in created and created["generation"] == 4


def test_without_webhook_retries_the_apply_fails_at_once_with_the_words_the_until_loop_retries_on():
    dynamic = DynamicClient([(NO_ENDPOINTS, 500, "InternalError")])
    api = k8s_api.Api(K8SClient(dynamic), timeout=300, webhook_timeout=0)
    with pytest.raises(manifests.ManifestError) as failure:
        Applier(api)._server_side_apply(Resource(), {"kind": "ConfigMap", "metadata": {"name": "x"}})
    assert dynamic.patches == 1
    assert "does not serve yet: no endpoints behind its Service yet (no retry: webhook_timeout 0)" in str(
        failure.value
    )
    assert webhook_not_ready({"failed": True, "msg": str(failure.value)})


# ----- the models role's filters -------------------------------------------------------------------------


ENTRIES = [{"name": "a"}, {"name": "b", "namespace": "team"}, {"name": "c"}]


def test_entries_by_namespace_keep_their_order():
    assert models_by_namespace(ENTRIES, "models") == {"models": ["a", "c"], "team": ["b"]}


def test_only_updates_that_move_the_generation_are_spec_changes():
    objects = [
        {"kind": "InferenceService", "name": "a", "namespace": "models", "action": "updated",
         "previous_generation": 1, "generation": 2},
        {"kind": "InferenceService", "name": "b", "namespace": "team", "action": "updated",
         "previous_generation": 2, "generation": 2},  # a label only
        {"kind": "InferenceService", "name": "c", "namespace": "models", "action": "created",
         "generation": 1},
        {"kind": "InferenceService", "name": "d", "namespace": "models", "action": "unchanged",
         "previous_generation": 1, "generation": 1},
    ]  # fmt: skip
    assert models_spec_changes(objects) == ["models/a"]
    assert models_select(ENTRIES, ["models/a", "team/b"], "models") == ENTRIES[:2]


def test_the_change_line_names_what_changes():
    objects = [
        {"name": "a", "action": "created"},
        {"name": "b", "action": "updated"},
        *({"name": f"u{i}", "action": "unchanged"} for i in range(98)),
    ]
    assert models_changes(objects, True) == (
        "InferenceServices would be created (1): a; would be updated (1): b; 98 unchanged"
    )
    assert models_changes(objects[2:]) == "InferenceServices all 98 unchanged"


SMOKE = {"protocol": "raw", "body": {"sequence": "hi"}, "labels": ["NEGATIVE", "POSITIVE"]}


def test_each_smoke_test_becomes_one_probe_of_one_run():
    entries = [
        {"name": "a", "model_name": "bert", "smoke_test": SMOKE},
        {"name": "b", "namespace": "team", "smoke_test": {"instances": ["x", "y"], "requests": 3}},
    ]
    assert models_smoke_probes(entries, "models") == [
        {"name": "a", "namespace": "models", "model_name": "bert", "requests": 1, "protocol": "raw",
         "body": {"sequence": "hi"}},
        {"name": "b", "namespace": "team", "model_name": "b", "requests": 3, "instances": ["x", "y"]},
    ]  # fmt: skip


def test_wrong_answers_are_named_per_model():
    entries = [
        {"name": "a", "smoke_test": SMOKE},
        {"name": "b", "smoke_test": SMOKE},
        {"name": "c", "smoke_test": {"instances": ["x", "y"]}},
    ]
    results = [
        {"name": "a", "predictions": [{"label": "POSITIVE"}], "sample_response": {"label": "POSITIVE"}},
        {"name": "b", "predictions": [{"label": "LABEL_0"}], "sample_response": {"label": "LABEL_0"}},
        {"name": "c", "predictions": [1], "sample_response": {"predictions": [1]}},
    ]
    assert models_smoke_problems(results, entries) == [
        'b answered {"label": "LABEL_0"}: expected one or more prediction(s), labelled one of '
        "NEGATIVE, POSITIVE",
        'c answered {"predictions": [1]}: expected 2 prediction(s), labelled one of any label',
    ]
    figures = models_probe_figures([{**results[0], "succeeded": 1, "requests": 1, "status_codes": {}}])
    assert figures == {"a": {"succeeded": 1, "requests": 1, "sample_response": {"label": "POSITIVE"}}}
