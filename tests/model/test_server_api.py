"""The model server as a user reaches it over HTTP: the seed's requests, v2, health, metrics, docs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.model.conftest import MODEL_NAME

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
INFER = f"/v2/models/{MODEL_NAME}/infer"
SEED_TEXTS = ["Hello, my dog is cute", "I am feeling happy"]


def predictions(server, body: dict) -> list[dict]:
    response = server.post(PREDICT, json=body)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def assert_prediction(prediction: dict, labels: set[str]) -> None:
    assert set(prediction) == {"label", "score"}
    assert prediction["label"] in labels
    assert 0.5 <= prediction["score"] <= 1.0  # the top class of two


def test_seed_custom_request_gets_a_label_and_score(server, model_labels):
    (prediction,) = predictions(server, {"sequence": "hello I am doing good"})
    assert_prediction(prediction, model_labels)


def test_seed_v1_request_gets_one_answer_per_text_in_order(server, model_labels):
    batch = predictions(server, {"instances": SEED_TEXTS})
    alone = [predictions(server, {"sequence": text})[0] for text in SEED_TEXTS]
    assert len(batch) == 2
    for together, single in zip(batch, alone, strict=True):
        assert_prediction(together, model_labels)
        assert together["label"] == single["label"]
        assert together["score"] == pytest.approx(single["score"], abs=1e-5)


def test_sequence_accepts_a_list_of_texts(server):
    from_sequence = predictions(server, {"sequence": SEED_TEXTS})
    from_instances = predictions(server, {"instances": SEED_TEXTS})
    assert [p["label"] for p in from_sequence] == [p["label"] for p in from_instances]
    assert [p["score"] for p in from_sequence] == pytest.approx([p["score"] for p in from_instances])


def test_the_model_answers_both_labels_of_its_config(server, model_labels):
    """The tiny model is random but not constant: across texts it uses every label of its config."""
    texts = [f"{word} day number {n}" for word in ("good", "bad", "happy", "terrible") for n in range(8)]
    seen = {prediction["label"] for prediction in predictions(server, {"instances": texts})}
    assert seen == model_labels


def test_v2_bytes_tensor_request(server, model_labels):
    body = {
        "id": "req-1",
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": SEED_TEXTS}],
    }
    response = server.post(INFER, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == "req-1"
    assert answer["model_name"] == MODEL_NAME
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [2]
    assert outputs["score"]["datatype"] == "FP32" and outputs["score"]["shape"] == [2]
    v1 = predictions(server, {"instances": SEED_TEXTS})
    assert outputs["label"]["data"] == [p["label"] for p in v1]
    assert outputs["score"]["data"] == pytest.approx([p["score"] for p in v1], abs=1e-5)
    assert set(outputs["label"]["data"]) <= model_labels


def test_v2_nested_shape_and_requested_outputs(server):
    body = {
        "inputs": [{"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": [SEED_TEXTS]}],
        "outputs": [{"name": "label"}],
    }
    response = server.post(INFER, json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "label" and len(output["data"]) == 2


def test_text_longer_than_the_model_accepts_is_truncated(server, model_labels):
    (prediction,) = predictions(server, {"sequence": "what a good day " * 2000})
    assert_prediction(prediction, model_labels)


def test_json_body_without_json_content_type_is_accepted(server):
    """curl -d sends application/x-www-form-urlencoded unless told otherwise."""
    response = server.post(
        PREDICT,
        data=b'{"sequence": "hello I am doing good"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_concurrent_requests_each_get_their_own_answer(server):
    texts = [f"request {n}: the food was {'good' if n % 2 else 'bad'} and {'x' * (n % 7)}" for n in range(48)]
    expected = {text: predictions(server, {"sequence": text})[0] for text in texts}
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda text: (text, server.post(PREDICT, json={"sequence": text})), texts))
    for text, response in answers:
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        assert prediction["label"] == expected[text]["label"]
        assert prediction["score"] == pytest.approx(expected[text]["score"], abs=1e-5)


def test_health_endpoints(server):
    assert server.get("/").json() == {"status": "alive"}
    assert server.get(f"/v1/models/{MODEL_NAME}").json() == {"name": MODEL_NAME, "ready": True}
    assert server.get("/v1/models").json() == {"models": [MODEL_NAME]}
    assert server.get("/v2/health/ready").status_code == 200
    assert server.get(f"/v2/models/{MODEL_NAME}/ready").status_code == 200
    metadata = server.get(f"/v2/models/{MODEL_NAME}").json()
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [output["name"] for output in metadata["outputs"]] == ["label", "score"]


def test_metrics_count_requests_by_model_protocol_and_code(server):
    predictions(server, {"sequence": "counted"})
    server.post(INFER, json={"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["x"]}]})
    server.post(PREDICT, json={"wrong": "field"})
    metrics = server.get("/metrics").text
    for expected in (
        f'kserve_ansible_model_requests_total{{code="200",model="{MODEL_NAME}",protocol="v1"}}',
        f'kserve_ansible_model_requests_total{{code="200",model="{MODEL_NAME}",protocol="v2"}}',
        f'kserve_ansible_model_requests_total{{code="400",model="{MODEL_NAME}",protocol="v1"}}',
        f'kserve_ansible_model_request_duration_seconds_count{{model="{MODEL_NAME}",protocol="v1"}}',
        f'kserve_ansible_model_batch_size_count{{model="{MODEL_NAME}"}}',
        f'kserve_ansible_model_forward_pass_seconds_count{{model="{MODEL_NAME}"}}',
        f'kserve_ansible_model_ready{{model="{MODEL_NAME}"}} 1.0',
        f'request_predict_seconds_count{{model_name="{MODEL_NAME}"}}',  # KServe's own
    ):
        assert expected in metrics, expected


def test_unknown_model_names_do_not_create_metric_labels(server):
    assert server.post("/v1/models/made-up-name:predict", json={"sequence": "x"}).status_code == 404
    metrics = server.get("/metrics").text
    assert 'model="made-up-name"' not in metrics
    assert 'kserve_ansible_model_requests_total{code="404",model="unknown",protocol="v1"}' in metrics


def test_docs_and_openapi_show_the_predict_request(server):
    docs = server.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    predict = server.get("/openapi.json").json()["paths"]["/v1/models/{model_name}:predict"]["post"]
    examples = predict["requestBody"]["content"]["application/json"]["examples"]
    assert examples["sequence"]["value"] == {"sequence": "hello I am doing good"}
    assert examples["instances"]["value"] == {"instances": SEED_TEXTS}
