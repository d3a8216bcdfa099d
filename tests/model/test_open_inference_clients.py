"""The standard Open Inference Protocol client, tritonclient.http, with its default settings (binary tensor
data extension: BYTES inputs and outputs as length-prefixed raw bytes) against the running model server; and
malformed binary requests refused with a 400 that says what is wrong."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.model.conftest import MODEL_NAME

INFER = f"/v2/models/{MODEL_NAME}/infer"
TEXTS = ["Hello, my dog is cute", "I am feeling happy", "The food was terrible."]


@pytest.fixture
def client(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def text_input(texts: list[str]) -> httpclient.InferInput:
    tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))  # binary by default
    return tensor


def json_answers(server, texts: list[str]) -> tuple[list[str], list[float]]:
    """The same texts sent as plain JSON tensors: what the binary answers must equal."""
    body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    response = server.post(INFER, json=body)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    return outputs["label"], outputs["score"]


def test_tritonclient_defaults_get_binary_labels_and_scores(server, client, model_labels):
    result = client.infer(MODEL_NAME, [text_input(TEXTS)])
    labels = [label.decode() for label in result.as_numpy("label").tolist()]
    scores = result.as_numpy("score").tolist()
    assert set(labels) <= model_labels and len(labels) == len(TEXTS)
    assert result.get_output("label")["parameters"]["binary_data_size"] > 0  # really binary on the wire
    expected_labels, expected_scores = json_answers(server, TEXTS)
    assert labels == expected_labels
    assert scores == pytest.approx(expected_scores, abs=1e-6)


def test_tritonclient_requested_outputs_binary_and_json(server, client):
    outputs = [
        httpclient.InferRequestedOutput("label"),
        httpclient.InferRequestedOutput("score", binary_data=False),
    ]
    result = client.infer(MODEL_NAME, [text_input(TEXTS[:2])], outputs=outputs)
    assert "data" not in result.get_output("label")  # binary by default
    assert result.get_output("score")["data"] == pytest.approx(json_answers(server, TEXTS[:2])[1], abs=1e-6)
    assert [label.decode() for label in result.as_numpy("label").tolist()] == json_answers(server, TEXTS[:2])[
        0
    ]


def test_tritonclient_model_metadata_and_readiness(client):
    assert client.is_model_ready(MODEL_NAME)
    assert client.get_model_metadata(MODEL_NAME)["inputs"][0]["datatype"] == "BYTES"


def malformed(header: dict, raw: bytes, words: str, json_length: int | str | None = None) -> tuple:
    """(body, headers, words expected in the message) of a binary request: JSON header, then ``raw``."""
    head = json.dumps(header).encode()
    length = len(head) if json_length is None else json_length
    headers = {"inference-header-content-length": str(length), "content-type": "application/octet-stream"}
    return head + raw, headers, words


def elements(*texts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(text)) + text for text in texts)


def tensor(size: int, shape: list | None = None, datatype: str = "BYTES", **fields) -> dict:
    parameters = {"binary_data_size": size}
    return {
        "inputs": [
            {"name": "text", "shape": shape or [1], "datatype": datatype, "parameters": parameters, **fields}
        ]
    }


HI = elements(b"hi")
MALFORMED = {
    "header length not a number": malformed(tensor(6), HI, "number of bytes", json_length="ten"),
    "header length beyond the body": malformed(tensor(6), HI, "only", json_length=10_000),
    "header not JSON": malformed(tensor(6), HI, "not valid JSON", json_length=5),
    "no inputs": malformed({"outputs": []}, b"", '"inputs" list'),
    "input without a shape": malformed(tensor(6, shape=["x"]), HI, "invalid shape"),
    "size larger than the body": malformed(tensor(60), HI, "body ends"),
    "cut element": malformed(tensor(5), HI[:5], "whole BYTES elements"),
    "length prefix too long": malformed(tensor(6), struct.pack("<I", 99) + b"hi", "whole BYTES elements"),
    "shape does not match the elements": malformed(
        tensor(12, shape=[3]), elements(b"hi", b"yo"), "shape [3]"
    ),
    "trailing bytes": malformed(tensor(6), HI + b"junk", "after the last input"),
    "negative size": malformed(tensor(-6), HI, "binary_data_size"),
    "binary FP32 tensor": malformed(tensor(4, datatype="FP32"), b"\x00\x00\x80?", "BYTES"),
    "no data and no size": malformed(
        {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES"}]}, b"", "neither"
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_binary_request_is_refused_with_a_reason(server, case):
    body, headers, words = MALFORMED[case]
    response = server.post(INFER, data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert words.lower() in response.json()["error"].lower(), response.text
