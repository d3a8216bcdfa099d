"""The probe's sender against a real local HTTP server: retries while warming, concurrency, Host header."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils.probe_http import Sender, resolve_target


class WarmingModel(BaseHTTPRequestHandler):
    """Answers 503 to its first `cold` requests (a model still loading), then echoes the request."""

    cold = 0
    seen: list

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.seen.append({"host": self.headers["Host"], "auth": self.headers.get("Authorization")})
            warming = self.server.cold > 0
            self.server.cold -= 1
        status, answer = (503, {"error": "model not ready"}) if warming else (200, {"echo": body})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def model_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), WarmingModel)
    server.lock, server.seen, server.cold = threading.Lock(), [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_retries_while_the_model_warms_up(model_server):
    model_server.cold = 2
    target = resolve_target(f"http://127.0.0.1:{model_server.server_port}", "/v1/models/m:predict")
    outcomes, _ = Sender(target, timeout=5, retries=3, retry_delay=0.01).send_all({"instances": [1]}, 1, 1)
    assert [(o.status, o.attempts, o.body) for o in outcomes] == [(200, 3, {"echo": {"instances": [1]}})]


def test_retries_are_bounded(model_server):
    model_server.cold = 10
    target = resolve_target(f"http://127.0.0.1:{model_server.server_port}", "/p")
    outcomes, _ = Sender(target, timeout=5, retries=2, retry_delay=0.01).send_all({}, 1, 1)
    assert [(o.status, o.attempts) for o in outcomes] == [(503, 3)]


def test_connection_refused_is_an_error_outcome():
    with ThreadingHTTPServer(("127.0.0.1", 0), WarmingModel) as closed:
        port = closed.server_port  # bound then closed: nothing listens there any more
    target = resolve_target(f"http://127.0.0.1:{port}", "/p")
    outcomes, _ = Sender(target, timeout=2, retries=1, retry_delay=0.01).send_all({}, 1, 1)
    assert outcomes[0].status is None
    assert outcomes[0].attempts == 2
    assert "ConnectionError" in outcomes[0].error


def test_concurrent_requests_through_the_ingress_carry_host_and_token(model_server):
    target = resolve_target(
        "http://bert.models.example.com",
        "/v1/models/bert:predict",
        ingress_host="127.0.0.1",
        ingress_port=model_server.server_port,
        bearer_token="t0k3n",
    )
    outcomes, wall = Sender(target, timeout=5, retries=0, retry_delay=0).send_all({"instances": ["x"]}, 12, 4)
    assert [o.status for o in outcomes] == [200] * 12
    assert all(o.latency_ms > 0 for o in outcomes) and wall > 0
    assert {(s["host"], s["auth"]) for s in model_server.seen} == {
        ("bert.models.example.com", "Bearer t0k3n")
    }
