"""The CloudEvents sink receives KServe request-logger events over real HTTP and stores them as JSON lines.

The requests are shaped like KServe's logger sends them (cloudevents sdk-go, binary mode): attributes in
`Ce-*` headers, extension attributes `inferenceservicename`, `namespace`, `component`, `endpoint` and a JSON
`metadata` (percent-encoded), the raw inference request or response as the body.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import socket
import threading
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
    url, events_file, stdout, _ = sink
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
    url, events_file, _, _ = sink
    headers = logger_headers("bin-1", "request") | {"Content-Type": "application/octet-stream"}

    assert requests.post(url, data=b"\x00\x01\xff", headers=headers, timeout=5).status_code == 200
    (event,) = read_lines(events_file)
    assert event["data_base64"] == "AAH/"
    assert "data" not in event


def test_structured_mode_events_are_accepted(sink):
    url, events_file, _, _ = sink
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
    url, events_file, _, _ = sink
    headers = logger_headers("x", "request")
    del headers["Ce-Source"]

    plain = requests.post(url, json=REQUEST_BODY, timeout=5)
    missing_source = requests.post(url, json=REQUEST_BODY, headers=headers, timeout=5)

    assert plain.status_code == 400
    assert "missing attribute(s) specversion, id, source, type" in plain.text
    assert missing_source.status_code == 400
    assert "source" in missing_source.text
    assert not events_file.exists()


# Hostile and broken clients. The sink answers one request per connection and then closes it, so a raw
# exchange reads its answer to the end.


def connect(url: str) -> socket.socket:
    address = urllib.parse.urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def read_until(sock: socket.socket, end: bytes) -> bytes:
    received = b""
    while not received.endswith(end) and (chunk := sock.recv(1)):
        received += chunk
    return received


def read_answer(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def raw_post(headers: str, body: bytes = b"") -> bytes:
    return f"POST / HTTP/1.1\r\nHost: sink\r\n{headers}\r\n".encode("latin-1") + body


def exchange(url: str, request: bytes) -> bytes:
    with connect(url) as sock:
        sock.sendall(request)
        return read_answer(sock)


def post_event(url: str, event_id: str, body: dict = REQUEST_BODY) -> requests.Response:
    return requests.post(url, data=json.dumps(body), headers=logger_headers(event_id, "request"), timeout=10)


def stored_ids(path) -> list[str]:
    return [event["id"] for event in read_lines(path)] if path.exists() else []


MAX_BODY = 1024
HOSTILE_REQUESTS = {
    "no Content-Length": (raw_post("Ce-Id: x\r\n"), 411),
    "chunked": (raw_post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), 411),
    "negative Content-Length": (raw_post("Content-Length: -1\r\n"), 400),
    "non-numeric Content-Length": (raw_post("Content-Length: 12abc\r\n", b"12abc"), 400),
    "two Content-Lengths": (raw_post("Content-Length: 2\r\nContent-Length: 3\r\n", b"{}"), 400),
    # Answered at once: the sink does not wait for (or read) a body over its limit.
    "huge Content-Length": (raw_post(f"Content-Length: {10**30}\r\n"), 413),
    "body over the limit": (raw_post(f"Content-Length: {4 * MAX_BODY}\r\n", b"x" * 4 * MAX_BODY), 413),
    "over the limit, 100-continue": (
        raw_post(f"Content-Length: {MAX_BODY + 1}\r\nExpect: 100-continue\r\n"),
        413,
    ),
    "too many headers": (raw_post("Ce-X: x\r\n" * 101), 431),
    "request line too long": (b"POST /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
}


@pytest.mark.parametrize("name", HOSTILE_REQUESTS)
def test_hostile_requests_are_refused_and_the_sink_keeps_serving(tmp_path, name):
    request, expected = HOSTILE_REQUESTS[name]
    with cloudevents_sink(tmp_path, "--max-body-bytes", str(MAX_BODY)) as (url, events_file, _, _):
        answer = exchange(url, request)

        assert status(answer) == expected, answer
        assert post_event(url, "after").status_code == 200
        assert stored_ids(events_file) == ["after"]


def test_events_whose_data_is_not_plain_json_are_kept_as_base64(sink):
    url, events_file, _, _ = sink
    deep = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's JSON decoder goes
    headers = logger_headers("deep", "request")

    answers = [
        requests.post(url, data=deep, headers=headers, timeout=10),
        requests.post(url, data=b'{"score": NaN}', headers=logger_headers("nan", "request"), timeout=10),
    ]

    assert [answer.status_code for answer in answers] == [200, 200]
    deep_event, nan_event = read_lines(events_file)
    assert base64.b64decode(deep_event["data_base64"]) == deep
    assert base64.b64decode(nan_event["data_base64"]) == b'{"score": NaN}'


def test_a_slow_client_does_not_block_others(tmp_path):
    with cloudevents_sink(tmp_path, "--workers", "2") as (url, events_file, _, _), connect(url) as slow:
        body = json.dumps(REQUEST_BODY).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in logger_headers("slow", "request").items())
        slow.sendall(raw_post(f"{head}Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"))
        # A worker holds the slow client: it has answered the headers and waits for the body.
        assert read_until(slow, b"\r\n\r\n").startswith(b"HTTP/1.1 100")

        assert post_event(url, "quick").status_code == 200

        slow.sendall(body)
        assert status(read_answer(slow)) == 200
        assert stored_ids(events_file) == ["quick", "slow"]


def test_slow_clients_are_cut_off_and_free_their_worker(tmp_path):
    with cloudevents_sink(tmp_path, "--workers", "1", "--timeout", "0.5") as (url, events_file, _, _):
        with connect(url) as slow_body:
            slow_body.sendall(raw_post("Content-Length: 100\r\n", b'{"instances": '))
            answer = read_answer(slow_body)
        with connect(url) as slow_headers:
            slow_headers.sendall(b"POST / HTTP/1.1\r\nHost: sink\r\nCe-Id: ")
            closed = read_answer(slow_headers)

        assert status(answer) == 408
        assert closed == b""
        assert post_event(url, "after").status_code == 200
        assert stored_ids(events_file) == ["after"]


def test_a_flood_within_the_queue_loses_nothing(tmp_path):
    count = 64  # all at once: within the default queue of 128 connections (and 8 workers)
    start = threading.Barrier(count)

    def post(number: int) -> int:
        start.wait()
        return post_event(url, f"flood-{number}").status_code

    with (
        cloudevents_sink(tmp_path) as (url, events_file, stdout, _),
        concurrent.futures.ThreadPoolExecutor(count) as pool,
    ):
        statuses = list(pool.map(post, range(count)))

    assert statuses == [200] * count
    expected = sorted(f"flood-{number}" for number in range(count))
    assert sorted(stored_ids(events_file)) == expected
    assert sorted(stored_ids(stdout)) == expected


def test_connections_beyond_the_queue_get_503_and_the_queued_ones_are_served(tmp_path):
    with cloudevents_sink(tmp_path, "--workers", "1", "--queue", "1") as (url, events_file, _, _):
        body = json.dumps(REQUEST_BODY).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in logger_headers("held", "request").items())
        with connect(url) as held:
            held.sendall(raw_post(f"{head}Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"))
            assert read_until(held, b"\r\n\r\n").startswith(b"HTTP/1.1 100")  # the one worker holds it
            queued = connect(url)  # accepted before the next one: it takes the one place in the queue
            queued.sendall(raw_post(f"{head.replace('held', 'queued')}Content-Length: {len(body)}\r\n", body))

            busy = exchange(url, raw_post(f"Content-Length: {len(body)}\r\n", body))

            held.sendall(body)
            assert status(read_answer(held)) == 200
            with queued:
                assert status(read_answer(queued)) == 200
        assert status(busy) == 503
        assert b"\r\nRetry-After: 1\r\n" in busy
        assert stored_ids(events_file) == ["held", "queued"]


def test_on_sigterm_the_accepted_connections_are_still_served(tmp_path):
    body = json.dumps(REQUEST_BODY).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in logger_headers("held", "request").items())
    with cloudevents_sink(tmp_path) as (url, events_file, _, process), connect(url) as held:
        held.sendall(raw_post(f"{head}Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"))
        assert read_until(held, b"\r\n\r\n").startswith(b"HTTP/1.1 100")

        process.terminate()  # as Kubernetes stops the pod
        held.sendall(body)

        assert status(read_answer(held)) == 200
        assert process.wait(timeout=15) == 0
        assert stored_ids(events_file) == ["held"]


def test_the_events_file_is_rotated_at_its_size(tmp_path):
    options = ("--file-max-bytes", "2000", "--file-keep", "1")
    with cloudevents_sink(tmp_path, *options) as (url, events_file, stdout, _):
        answers = [post_event(url, f"e{number}").status_code for number in range(20)]

    assert answers == [200] * 20
    rotated = events_file.with_name("events.jsonl.1")
    assert sorted(path.name for path in tmp_path.glob("events.jsonl*")) == ["events.jsonl", "events.jsonl.1"]
    assert all(path.stat().st_size <= 2000 for path in (events_file, rotated))
    # stdout has every event; the files the newest ones, in order.
    every = stored_ids(stdout)
    kept = stored_ids(rotated) + stored_ids(events_file)
    assert every == [f"e{number}" for number in range(20)]
    assert kept == every[-len(kept) :]
    assert len(kept) < len(every)


def test_an_event_larger_than_the_file_limit_goes_to_stdout_only(tmp_path):
    with cloudevents_sink(tmp_path, "--file-max-bytes", "2000") as (url, events_file, stdout, _):
        answers = [post_event(url, "big", {"instances": ["x" * 3000]}), post_event(url, "small")]

    assert [answer.status_code for answer in answers] == [200, 200]
    assert stored_ids(stdout) == ["big", "small"]
    assert stored_ids(events_file) == ["small"]
