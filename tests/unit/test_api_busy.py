"""The API server is busy (overloaded, slow storage): our calls retry what is safe to repeat, a few times,
and say so; a create, or any other error, is not retried."""

from __future__ import annotations

import json

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import k8s_api
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import api_exception

TIMEOUT = "Timeout: request did not complete within requested timeout - context deadline exceeded"
PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/llminferenceserviceconfigs.serving.kserve.io"


class Response:
    data = json.dumps({"metadata": {"resourceVersion": "2"}})


class DynamicClient:
    """The kubernetes dynamic client's `request`, answering with a script of API errors first."""

    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def request(self, method, path, body=None, serialize=False, **params):
        self.calls += 1
        if self.errors:
            code, reason, message = self.errors.pop(0)
            error = ApiException(status=code, reason=reason)
            error.body = json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message})
            raise api_exception(error)
        return Response()


class K8SClient:
    def __init__(self, dynamic):
        self.client = dynamic


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(k8s_api, "BUSY_PAUSES", (0, 0, 0, 0))


def api(errors):
    dynamic, warnings = DynamicClient(errors), []
    return k8s_api.Api(K8SClient(dynamic), warn=warnings.append), dynamic, warnings


@pytest.mark.parametrize(
    "error",
    [
        (500, "InternalError", TIMEOUT),
        (504, "Timeout", "the server was unable to return a response in the time allotted"),
        (429, "TooManyRequests", "too many requests, please try again later"),
        (503, "ServiceUnavailable", "the server is currently unable to handle the request"),
    ],
)
def test_a_busy_answer_to_an_apply_is_retried_and_said(error):
    client, dynamic, warnings = api([error, error])
    answer = client.request("patch", PATH, body={}, content_type="application/apply-patch+yaml")
    assert answer == {"metadata": {"resourceVersion": "2"}}
    assert dynamic.calls == 3
    assert len(warnings) == 2 and warnings[0].startswith(f"PATCH {PATH}: the API server is busy ({error[0]}:")
    assert warnings[1].endswith("retry 2 of 4 in 0 s")


def test_a_create_is_not_repeated_it_may_have_been_done():
    client, dynamic, _ = api([(500, "InternalError", TIMEOUT)])
    with pytest.raises(Exception, match="context deadline exceeded"):
        client.request("post", "/api/v1/namespaces/default/jobs", body={})
    assert dynamic.calls == 1


def test_other_errors_are_not_retried():
    client, dynamic, warnings = api(
        [(500, "InternalError", 'failed calling webhook "x": no endpoints available')]
    )
    with pytest.raises(Exception, match="failed calling webhook"):
        client.request("patch", PATH, body={})
    assert (dynamic.calls, warnings) == (1, [])


def test_a_server_busy_for_longer_fails_with_its_message():
    client, dynamic, warnings = api([(500, "InternalError", TIMEOUT)] * 5)
    with pytest.raises(Exception, match="context deadline exceeded"):
        client.request("get", PATH)
    assert (dynamic.calls, len(warnings)) == (5, 4)
