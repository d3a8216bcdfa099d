"""Bad input gets a 4xx with a message that says what is wrong; never a 500, never a crash."""

from __future__ import annotations

import json

import pytest

from tests.model.conftest import MODEL_NAME

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
INFER = f"/v2/models/{MODEL_NAME}/infer"
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}  # curl -d without -H
ONE_MIB = 1 << 20


def v2_body(**tensor) -> dict:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"], **tensor}]}


CASES = {
    # name: (path, raw body, extra headers, expected status, words expected in the message)
    "not JSON": (PREDICT, b"hello there", JSON, 400, "request format"),
    "not JSON, form content type": (PREDICT, b"hello there", FORM, 400, "not valid JSON"),
    "empty body": (PREDICT, b"", JSON, 400, "empty"),
    "JSON array instead of object": (PREDICT, b'["hello"]', JSON, 400, "JSON object"),
    "missing field": (PREDICT, b'{"text": "hello"}', JSON, 400, '"sequence"'),
    "sequence of wrong type": (PREDICT, b'{"sequence": 42}', JSON, 400, "must be a text or a list"),
    "instances not a list": (PREDICT, b'{"instances": "hello"}', JSON, 400, "must be a list"),
    "empty instances": (PREDICT, b'{"instances": []}', JSON, 400, "is empty"),
    "empty sequence list": (PREDICT, b'{"sequence": []}', JSON, 400, "is empty"),
    "non-text instance": (
        PREDICT,
        b'{"instances": ["ok", null]}',
        JSON,
        400,
        "instances[1] must be a string",
    ),
    "both fields": (PREDICT, b'{"sequence": "a", "instances": ["b"]}', JSON, 400, "not both"),
    "too many instances": (
        PREDICT,
        json.dumps({"instances": ["hi"] * 65}).encode(),
        JSON,
        400,
        "limit of 64",
    ),
    "invalid UTF-8": (PREDICT, b'{"sequence": "\xff\xfe"}', JSON, 400, "UTF-8"),
    "deeply nested JSON": (PREDICT, b"[" * 5000 + b"]" * 5000, JSON, 400, "depth"),
    "oversized body": (PREDICT, json.dumps({"sequence": "a" * (ONE_MIB + 10)}).encode(), JSON, 413, "limit"),
    "GET on predict": (PREDICT, None, {}, 405, "POST"),
    "unknown model": ("/v1/models/no-such-model:predict", b'{"sequence": "a"}', JSON, 404, "does not exist"),
    "v2 not JSON": (INFER, b"hello", JSON, 422, "JSON"),
    "v2 without inputs": (INFER, b"{}", JSON, 422, "inputs"),
    "v2 wrong datatype": (
        INFER,
        json.dumps(v2_body(datatype="FP32", data=[1.0])).encode(),
        JSON,
        400,
        "BYTES",
    ),
    "v2 shape mismatch": (INFER, json.dumps(v2_body(shape=[3])).encode(), JSON, 400, "shape [3]"),
    "v2 negative shape": (INFER, json.dumps(v2_body(shape=[-1])).encode(), JSON, 400, "invalid shape"),
    "v2 number in BYTES": (INFER, json.dumps(v2_body(data=[7])).encode(), JSON, 400, "must be a string"),
    "v2 empty tensor": (INFER, json.dumps(v2_body(shape=[0], data=[])).encode(), JSON, 400, "is empty"),
    "v2 no tensors": (INFER, b'{"inputs": []}', JSON, 400, "exactly 1 input"),
    "v2 two tensors": (
        INFER,
        json.dumps({"inputs": v2_body()["inputs"] * 2}).encode(),
        JSON,
        400,
        "exactly 1 input",
    ),
    "v2 unknown output": (
        INFER,
        json.dumps({**v2_body(), "outputs": [{"name": "embedding"}]}).encode(),
        JSON,
        400,
        "embedding",
    ),
    "v2 binary tensor request with a cut JSON header": (
        INFER,
        b'{"inputs": [',
        {"content-type": "application/octet-stream", "inference-header-content-length": "12"},
        400,
        "binary tensor request: the JSON header",
    ),
    "v2 bytes without JSON content type": (
        INFER,
        b"hello",
        {"content-type": "application/octet-stream"},
        400,
        "inference-header-content-length",
    ),
    "model unload over HTTP": (f"/v2/repository/models/{MODEL_NAME}/unload", b"", {}, 403, "disabled"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_request_is_refused_with_a_message(server, case):
    path, body, headers, status, words = CASES[case]
    if body is None:
        response = server.get(path, headers=headers)
    else:
        response = server.post(path, data=body, headers=headers)
    assert response.status_code == status, response.text
    assert words.lower() in error_message(response).lower(), response.text


def error_message(response) -> str:
    """KServe and our guards answer {"error": message}; FastAPI's request validation {"detail": [...]}."""
    body = response.json()
    return body["error"] if "error" in body else str(body["detail"])


def test_oversized_chunked_body_is_refused_while_reading(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    response = server.post(PREDICT, data=chunks(), headers=JSON)
    assert response.status_code == 413, response.text


def test_after_bad_requests_the_server_still_serves_and_never_answered_500(server):
    for case in CASES.values():
        path, body, headers, *_ = case
        if body is not None:
            server.post(path, data=body, headers=headers)
    response = server.post(PREDICT, json={"sequence": "still here"})
    assert response.status_code == 200, response.text
    assert server.get(f"/v1/models/{MODEL_NAME}").status_code == 200
    assert 'code="500"' not in server.get("/metrics").text
