"""What the inference probe sends, how it judges answers, and its latency figures."""

import json
import pathlib
import random

import numpy
import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils.probe import (
    Outcome,
    ProbeInputError,
    build_request,
    judge,
    latency_summary,
    percentile,
    predictions_of,
    slo_violations,
    subset_differences,
    validate_expectations,
)
from ansible_collections.kserve_ansible.serving.plugins.module_utils.probe_http import resolve_target

RESPONSES = pathlib.Path(__file__).parent / "fixtures" / "responses"


def response(name: str):
    return json.loads((RESPONSES / f"{name}.json").read_text())


TENSOR = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["I love it", "I hate it"]}


# --------------------------------------------------------------------------- requests


def test_v1_request():
    request = build_request("v1", "bert-sentiment", instances=["I love it", "I hate it"])
    assert request.path == "/v1/models/bert-sentiment:predict"
    assert request.body == {"instances": ["I love it", "I hate it"]}
    assert request.rows == 2


def test_v2_request():
    request = build_request("v2", "bert-sentiment", inputs=[TENSOR])
    assert request.path == "/v2/models/bert-sentiment/infer"
    assert request.body == {"inputs": [TENSOR]}
    assert request.rows == 2


def test_raw_request_defaults_to_the_v1_predict_path():
    request = build_request("raw", "bert-sentiment", body={"sequence": "I love it"})
    assert request.path == "/v1/models/bert-sentiment:predict"
    assert request.body == {"sequence": "I love it"}
    assert request.rows is None


def test_raw_request_with_own_path_and_instances():
    request = build_request("raw", "m", body={"instances": [1, 2, 3]}, path="/v1/models/m:explain")
    assert (request.path, request.rows) == ("/v1/models/m:explain", 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "grpc", "instances": [1]}, "unknown protocol 'grpc': use one of v1, v2, raw"),
        ({"protocol": "v1"}, "protocol v1 needs instances"),
        ({"protocol": "v1", "instances": []}, "instances must be a non-empty list"),
        ({"protocol": "v1", "inputs": [TENSOR]}, "inputs is not used with protocol v1: give instances"),
        ({"protocol": "v2", "instances": ["x"]}, "instances is not used with protocol v2: give inputs"),
        ({"protocol": "v1", "instances": [1], "path": "/x"}, "path is only for protocol raw"),
        ({"protocol": "raw", "body": "text"}, "body must be a JSON object or list"),
        ({"protocol": "raw", "body": {}, "path": "v1/x"}, "path must start with '/'"),
        ({"protocol": "v2", "inputs": [{"name": "t", "shape": [2]}]}, "inputs[0] lacks datatype, data"),
        (
            {"protocol": "v2", "inputs": [{**TENSOR, "shape": [3]}]},
            "inputs[0] has 2 data elements but shape [3] needs 3",
        ),
        (
            {"protocol": "v2", "inputs": [{**TENSOR, "datatype": "STRING"}]},
            "inputs[0].datatype 'STRING' is not",
        ),
        ({"protocol": "v2", "inputs": [{**TENSOR, "shape": "2"}]}, "inputs[0].shape must be a list"),
    ],
)
def test_bad_probe_inputs_are_refused_with_a_clear_message(kwargs, message):
    protocol = kwargs.pop("protocol")
    with pytest.raises(ProbeInputError) as error:
        build_request(protocol, "m", **kwargs)
    assert message in str(error.value)


def test_v2_shape_counts_nested_data():
    tensor = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1.0, 2.0], [3.0, 4.0]]}
    assert build_request("v2", "m", inputs=[tensor]).rows == 2


def test_expectations_must_match_the_number_of_inputs():
    validate_expectations([{"label": "POSITIVE"}, {"label": "NEGATIVE"}], rows=2)
    validate_expectations([{"label": "POSITIVE"}], rows=None)
    with pytest.raises(ProbeInputError, match="expect has 1 entries but the request has 2 inputs"):
        validate_expectations([{"label": "POSITIVE"}], rows=2)
    with pytest.raises(ProbeInputError, match="expect must be a list"):
        validate_expectations({"label": "POSITIVE"}, rows=1)


# --------------------------------------------------------------------------- answers


def test_v1_predictions():
    assert predictions_of("v1", response("v1_sentiment")) == [
        {"label": "POSITIVE", "score": 0.9987},
        {"label": "NEGATIVE", "score": 0.9641},
    ]


def test_v2_predictions_are_rows_of_the_output_tensors():
    assert predictions_of("v2", response("v2_sentiment")) == [
        {"label": "POSITIVE", "score": 0.9987},
        {"label": "NEGATIVE", "score": 0.9641},
    ]


def test_v2_rows_of_a_two_dimensional_output():
    answer = {
        "outputs": [{"name": "probs", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]
    }
    assert predictions_of("v2", answer) == [{"probs": [0.1, 0.9]}, {"probs": [0.8, 0.2]}]


def test_raw_predictions():
    assert predictions_of("raw", {"label": "POSITIVE"}) == [{"label": "POSITIVE"}]
    assert predictions_of("raw", [1, 0]) == [1, 0]
    assert predictions_of("raw", response("v1_stock_huggingface")) == [1, 1]


def test_subset_matches_ignore_extra_keys():
    assert subset_differences({"label": "POSITIVE"}, {"label": "POSITIVE", "score": 0.99}) == []


def test_subset_differences_are_readable():
    expected = {"predictions": [{"label": "POSITIVE"}, {"label": "POSITIVE"}]}
    assert subset_differences(expected, response("v1_sentiment")) == [
        'predictions[1].label: expected "POSITIVE", got "NEGATIVE"'
    ]


def test_subset_differences_missing_key_wrong_type_and_length():
    assert subset_differences({"label": "X"}, {"score": 1}) == ['label: missing (expected "X")']
    assert subset_differences({"a": {"b": 1}}, {"a": [1]}) == ["a: expected a mapping, got [1]"]
    assert subset_differences([1, 2], [1]) == ["answer: expected 2 items, got 1: [1]"]


def test_numbers_match_within_tolerance_but_booleans_are_not_numbers():
    assert subset_differences(0.1 + 0.2, 0.3) == []
    assert subset_differences(1, 1.0) == []
    assert subset_differences(True, 1) == ["answer: expected true, got 1"]


# --------------------------------------------------------------------------- latency


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.5
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile([42.0], 99) == 42.0


def test_percentile_agrees_with_numpy():
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 0.5) for _ in range(997)]
    for q in (50, 90, 95, 99, 99.9):
        assert percentile(values, q) == pytest.approx(numpy.percentile(values, q))


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_summary_and_slo():
    summary = latency_summary([10.0, 20.0, 30.0, 40.0, 100.0])
    assert summary == {
        "min": 10.0,
        "max": 100.0,
        "mean": 40.0,
        "p50": 30.0,
        "p90": 76.0,
        "p95": 88.0,
        "p99": 97.6,
    }
    assert slo_violations({"p50_ms": 50, "p99_ms": 200, "p95_ms": None}, summary) == []
    assert slo_violations({"p95_ms": 50, "max_ms": 99}, summary) == [
        "latency p95 88.0 ms exceeds the SLO p95_ms=50 ms",
        "latency max 100.0 ms exceeds the SLO max_ms=99 ms",
    ]


# --------------------------------------------------------------------------- verdict


def outcomes(*statuses, body=None):
    return [Outcome(status, 10.0 + i, body, attempts=1) for i, status in enumerate(statuses)]


def test_passing_probe_returns_its_figures():
    figures, failures = judge(
        outcomes(200, 200, 200, body=response("v1_sentiment")),
        0.5,
        "v1",
        expect=[{"label": "POSITIVE"}, {"label": "NEGATIVE"}],
        slo={"p99_ms": 100},
    )
    assert failures == []
    assert figures["status_codes"] == {"200": 3}
    assert figures["succeeded"] == 3
    assert figures["latencies_ms"] == [10.0, 11.0, 12.0]
    assert figures["latency_ms"]["p50"] == 11.0
    assert figures["throughput_rps"] == 6.0
    assert figures["predictions"][0] == {"label": "POSITIVE", "score": 0.9987}


def test_wrong_label_fails_with_a_readable_diff():
    _, failures = judge(
        outcomes(200, 200, body=response("v1_sentiment")),
        1.0,
        "v1",
        expect=[{"label": "POSITIVE"}, {"label": "POSITIVE"}],
    )
    assert failures == [
        "2 of 2 answers do not match the expectations; answer 1:\n"
        '  predictions[1].label: expected "POSITIVE", got "NEGATIVE"\n'
        '      prediction 1 was: {"label": "NEGATIVE", "score": 0.9641}'
    ]


def test_unexpected_status_codes_and_errors_are_counted():
    results = [*outcomes(200, 503), Outcome(None, 5.0, error="ConnectionError: refused", attempts=6)]
    figures, failures = judge(results, 1.0, "v1")
    assert figures["status_codes"] == {"200": 1, "503": 1, "error": 1}
    assert figures["retries"] == 5
    assert failures == ["2 of 3 requests did not return 200; first: HTTP 503: null"]


def test_expect_response_checks_the_whole_answer():
    _, failures = judge(
        outcomes(200, body={"model_name": "m", "outputs": []}), 1.0, "v2", expect_response={"model_name": "n"}
    )
    assert failures == [
        '1 of 1 answers do not match the expectations; answer 1:\n  model_name: expected "n", got "m"'
    ]


# --------------------------------------------------------------------------- where requests go


def test_target_through_the_ingress_sends_the_service_host():
    target = resolve_target(
        "http://bert-sentiment.models.127.0.0.1.sslip.io",
        "/v1/models/bert-sentiment:predict",
        ingress_host="127.0.0.1",
        ingress_port=31080,
    )
    assert target.url == "http://127.0.0.1:31080/v1/models/bert-sentiment:predict"
    assert target.host_header == "bert-sentiment.models.127.0.0.1.sslip.io"


def test_direct_target_keeps_a_path_prefix_and_adds_the_token():
    target = resolve_target("https://gw.example.com/serving/", "/v2/models/m/infer", bearer_token="s3cret")
    assert target.url == "https://gw.example.com/serving/v2/models/m/infer"
    assert target.headers["Authorization"] == "Bearer s3cret"
    assert target.host_header is None
    assert target.verify is True


def test_tls_verification_options():
    assert resolve_target("https://h", "/p", ca_path="/etc/ca.pem").verify == "/etc/ca.pem"
    assert resolve_target("https://h", "/p", validate_certs=False, ca_path="/etc/ca.pem").verify is False


def test_target_needs_an_http_url():
    with pytest.raises(ValueError, match="not an http"):
        resolve_target("bert-sentiment.models", "/p")
