"""Which API errors of admission webhooks are retried (the webhook does not serve yet) and which fail at once
(the webhook rejected the object): module_utils/webhooks.py, the test plugin `webhook_not_ready` the roles'
`until:` conditions use, and the bounded retry of our own server-side apply (k8s_apply.Applier)."""

from __future__ import annotations

import json
import re

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import k8s_api, manifests, webhooks
from ansible_collections.kserve_ansible.serving.plugins.module_utils.k8s_apply import Applier
from ansible_collections.kserve_ansible.serving.plugins.test.webhooks import webhook_not_ready
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import api_exception

from tests.helpers import run_playbook

KSERVE_URL = (
    "https://kserve-webhook-server-service.kserve.svc:443/mutate-serving-kserve-io-v1beta1-inferenceservice"
)
NO_ENDPOINTS = (
    'Internal error occurred: failed calling webhook "inferenceservice.kserve-webhook-server.defaulter": '
    f'failed to call webhook: Post "{KSERVE_URL}?timeout=10s": '
    'no endpoints available for service "kserve-webhook-server-service"'
)
REFUSED = (
    'Internal error occurred: failed calling webhook "config.webhook.serving.knative.dev": failed to call '
    'webhook: Post "https://webhook.knative-serving.svc:443/config-validation?timeout=10s": '
    "dial tcp 10.96.0.12:443: connect: connection refused"
)
UNTRUSTED = (
    'Internal error occurred: failed calling webhook "inferenceservice.kserve-webhook-server.validator": '
    f'failed to call webhook: Post "{KSERVE_URL}?timeout=10s": tls: failed to verify certificate: '
    'x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error" '
    'while trying to verify candidate authority certificate "kserve-webhook-server-ca")'
)
DENIED = (
    'admission webhook "validation.webhook.serving.knative.dev" denied the request: validation failed: '
    "must not set the field(s): spec.template.spec.nodeSelector"
)
KSERVE_DENIED = (
    'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: '
    'the InferenceService "bad" is invalid: exactly one of [predictor.model, predictor.containers] is set'
)


def status_body(message, code=500, reason="InternalError"):
    return json.dumps(
        {"kind": "Status", "status": "Failure", "message": message, "reason": reason, "code": code}
    )


def k8s_task_failure(message, code=500, reason="InternalError"):
    """A failed kubernetes.core.k8s result as registered: its msg wraps the API server's Status body."""
    body = status_body(message, code, reason).encode()
    return {"failed": True, "changed": False, "msg": f"Failed to apply object: {body!r}"}


@pytest.mark.parametrize("message", [NO_ENDPOINTS, REFUSED, UNTRUSTED])
def test_a_webhook_that_does_not_serve_yet_is_retried(message):
    assert webhooks.not_ready(message)
    assert webhook_not_ready(k8s_task_failure(message))
    assert webhook_not_ready(message)


@pytest.mark.parametrize("message", [DENIED, KSERVE_DENIED])
def test_a_rejection_is_final(message):
    assert not webhooks.not_ready(message)
    assert not webhook_not_ready(k8s_task_failure(message, code=400, reason="BadRequest"))


@pytest.mark.parametrize(
    "result",
    [
        {"failed": False, "changed": True, "result": {"kind": "InferenceService"}},
        {"failed": True, "msg": 'Failed to apply object: namespaces "nowhere" not found'},
        {"failed": True, "msg": 'Apply failed with 1 conflict: conflict with "kubectl": .data.x'},
        {"failed": True},
        {"skipped": True},
    ],
)
def test_success_and_other_errors_are_not_retried(result):
    assert not webhook_not_ready(result)


def test_a_success_whose_object_mentions_the_words_is_not_retried():
    result = {"failed": False, "msg": NO_ENDPOINTS}
    assert not webhook_not_ready(result)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            NO_ENDPOINTS,
            'admission webhook "inferenceservice.kserve-webhook-server.defaulter" does not serve yet: '
            "no endpoints behind its Service yet",
        ),
        (
            REFUSED,
            'admission webhook "config.webhook.serving.knative.dev" does not serve yet: '
            "its port is not open yet",
        ),
        (
            UNTRUSTED,
            'admission webhook "inferenceservice.kserve-webhook-server.validator" does not serve yet: '
            "its certificate is not trusted yet (CA bundle being injected)",
        ),
    ],
)
def test_the_retry_message_names_the_webhook_and_why(message, expected):
    assert webhooks.explain(message) == expected
    # the same from the escaped JSON a kubernetes.core.k8s failure carries
    assert webhooks.explain(k8s_task_failure(message)["msg"]) == expected


# ----- our own server-side apply (k8s_manifest_set): the same rule, bounded by the API timeout -----------
class Resource:
    """The part of a kubernetes dynamic-client Resource the applier uses."""

    namespaced = True

    def path(self, name=None, namespace=None):
        return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


class Response:
    def __init__(self, obj):
        self.data = json.dumps(obj)


class DynamicClient:
    """The kubernetes dynamic client's `request`: answers PATCHes with a script of errors, then applies."""

    def __init__(self, errors):
        self.errors = list(errors)
        self.patches = 0

    def request(self, method, path, body=None, serialize=False, **params):
        assert method == "patch" and params["content_type"] == "application/apply-patch+yaml"
        self.patches += 1
        if self.errors:
            message, code, reason = self.errors.pop(0)
            error = ApiException(status=code, reason=reason)
            error.body = status_body(message, code, reason)
            raise api_exception(error)
        return Response({**body, "metadata": {**body["metadata"], "resourceVersion": "2"}})


class K8SClient:
    def __init__(self, dynamic):
        self.client = dynamic


CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "config-features", "namespace": "knative-serving"},
    "data": {"kubernetes.podspec-nodeselector": "enabled"},
}


def applier(errors, timeout=30):
    dynamic = DynamicClient(errors)
    warnings = []
    api = k8s_api.Api(K8SClient(dynamic), timeout=timeout, warn=warnings.append)
    return Applier(api), dynamic, warnings


def test_our_apply_retries_while_the_webhook_does_not_serve_and_says_so():
    apply, dynamic, warnings = applier([(REFUSED, 500, "InternalError")])
    after = apply._server_side_apply(Resource(), CONFIG_MAP)
    assert after["metadata"]["resourceVersion"] == "2"
    assert dynamic.patches == 2
    [warning] = warnings
    assert re.fullmatch(
        r"ConfigMap knative-serving/config-features: applied after 1 retry over \d+ s "
        r'\(admission webhook "config.webhook.serving.knative.dev" does not serve yet: '
        r"its port is not open yet\)",
        warning,
    )


def test_our_apply_fails_at_once_on_a_rejection_with_the_webhooks_message():
    apply, dynamic, warnings = applier([(DENIED, 400, "BadRequest")])
    with pytest.raises(manifests.ManifestError, match="denied the request: validation failed: must not set"):
        apply._server_side_apply(Resource(), CONFIG_MAP)
    assert dynamic.patches == 1
    assert warnings == []


def test_our_apply_gives_up_after_its_timeout():
    apply, dynamic, _ = applier([(NO_ENDPOINTS, 500, "InternalError")] * 10, timeout=1)
    with pytest.raises(manifests.ManifestError, match=r"gave up after 1 attempts over 0 s .*no endpoints"):
        apply._server_side_apply(Resource(), CONFIG_MAP)
    assert dynamic.patches == 1


# ----- the roles' `until:` condition in a real play ------------------------------------------------
UNTIL_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: A write the API server answers with {{ problem | truncate(30) }}
      ansible.builtin.fail:
        msg: "{{ problem }}"
      register: applied
      until: applied is not kserve_ansible.serving.webhook_not_ready
      retries: 2
      delay: 0
"""


@pytest.mark.parametrize(
    ("problem", "attempts"),
    [(f"Failed to apply object: {NO_ENDPOINTS}", 3), (f"Failed to apply object: {DENIED}", 1)],
)
def test_the_until_condition_retries_only_a_webhook_that_does_not_serve(tmp_path, problem, attempts):
    play = tmp_path / "until.yml"
    play.write_text(UNTIL_PLAY)
    result = run_playbook(str(play), "-e", json.dumps({"problem": problem}), timeout=120)
    assert result.returncode != 0
    assert result.stdout.count("FAILED - RETRYING") == attempts - 1, result.stdout[-3000:]
    assert "denied the request" in result.stdout or "no endpoints available" in result.stdout
