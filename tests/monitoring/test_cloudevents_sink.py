"""The CloudEvents sink receives KServe request-logger events over real HTTP and stores them as JSON lines.

The requests are shaped like KServe's logger sends them (cloudevents sdk-go, binary mode): attributes in
`Ce-*` headers, extension attributes `inferenceservicename`, `namespace`, `component`, `endpoint` and a JSON
`metadata` (percent-encoded), the raw inference request or response as the body.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest
import requests

from tests.monitoring.processes import cloudevents_sink

REQUEST_BODY = {"instances": ["Hello, my dog is cute", "I am feeling happy"]}
RESPONSE_BODY = {"predictions": [{"label": "POSITIVE", "score": 0.71}, {"label": "POSITIVE", "score": 0.66}]}


def logger_headers(event_id: str, event_type: str) -> dict[str, str]:
    return {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id,
        "Ce-Type": f"org.kubeflow.serving.inference.{event_type}",
        "Ce-Source": "http://localhost:9081/",
        "Ce-Time": "2026-11-28T18:40:00.123456789Z",
        "Ce-Inferenceservicename": "distilbert-sentiment",
        "Ce-Namespace": "kserve-test",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "distilbert-sentiment-predictor-00001",
        "Ce-Metadata": urllib.parse.quote(json.dumps({"x-request-id": ["abc 123"]}), safe="{}:,[]"),
        "Content-Type": "application/json",
    }


@pytest.fixture
def sink(tmp_path):
    with cloudevents_sink(tmp_path) as running_sink:
        yield running_sink


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_request_and_response_events_are_stored_with_their_attributes(sink):
    url, events_file, stdout = sink
    event_id = str(uuid.uuid4())
    answers = [
        requests.post(url, data=json.dumps(body), headers=logger_headers(event_id, kind), timeout=5)
        for kind, body in (("request", REQUEST_BODY), ("response", RESPONSE_BODY))
    ]

    # The logger counts any other status as a failed delivery.
    assert [answer.status_code for answer in answers] == [200, 200]
    request_event, response_event = read_lines(events_file)
    assert request_event == {
        "specversion": "1.0",
        "id": event_id,
        "type": "org.kubeflow.serving.inference.request",
        "source": "http://localhost:9081/",
        "time": "2026-11-28T18:40:00.123456789Z",
        "inferenceservicename": "distilbert-sentiment",
        "namespace": "kserve-test",
        "component": "predictor",
        "endpoint": "distilbert-sentiment-predictor-00001",
        "metadata": '{"x-request-id": ["abc 123"]}',
        "datacontenttype": "application/json",
        "data": REQUEST_BODY,
    }
    assert response_event["type"] == "org.kubeflow.serving.inference.response"
    assert response_event["id"] == event_id  # a request and its response share the id
    assert response_event["data"] == RESPONSE_BODY
    assert read_lines(stdout) == [request_event, response_event]  # stdout, for the log shipper


def test_non_json_payloads_are_kept_as_base64(sink):
    url, events_file, _ = sink
    headers = logger_headers("bin-1", "request") | {"Content-Type": "application/octet-stream"}

    assert requests.post(url, data=b"\x00\x01\xff", headers=headers, timeout=5).status_code == 200
    (event,) = read_lines(events_file)
    assert event["data_base64"] == "AAH/"
    assert "data" not in event


def test_structured_mode_events_are_accepted(sink):
    url, events_file, _ = sink
    event = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/t",
        "type": "org.kubeflow.serving.inference.request",
    }
    event |= {"datacontenttype": "application/json", "data": REQUEST_BODY}

    answer = requests.post(
        url, data=json.dumps(event), headers={"Content-Type": "application/cloudevents+json"}, timeout=5
    )

    assert answer.status_code == 200
    assert read_lines(events_file) == [event]


def test_requests_that_are_not_cloudevents_are_refused_and_not_stored(sink):
    url, events_file, _ = sink
    headers = logger_headers("x", "request")
    del headers["Ce-Source"]

    plain = requests.post(url, json=REQUEST_BODY, timeout=5)
    missing_source = requests.post(url, json=REQUEST_BODY, headers=headers, timeout=5)

    assert plain.status_code == 400
    assert "missing attribute(s) specversion, id, source, type" in plain.text
    assert missing_source.status_code == 400
    assert "source" in missing_source.text
    assert not events_file.exists()
