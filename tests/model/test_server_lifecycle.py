"""Start-up, readiness, load failures and shutdown of the model server process."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.model.conftest import MODEL_NAME
from tests.model.server_process import ServerProcess


def test_ready_only_after_the_model_has_loaded(tiny_model_dir, tmp_path):
    gate = tmp_path / "load-now"  # the model loads once the test creates this file, not after some seconds
    server = ServerProcess(tiny_model_dir, tmp_path / "server.log", f"--load_after_file={gate}")
    try:
        server.wait_listening()
        server.wait_until(lambda: f"loads once {gate} exists" in server.log(), 30, "to wait at the gate")
        # Listening, alive, but the model not loaded: not ready, and predictions are refused with 503.
        assert server.get("/").status_code == 200
        assert server.get(f"/v1/models/{MODEL_NAME}").status_code == 503
        assert server.get("/v2/health/ready").status_code == 503
        refused = server.post(f"/v1/models/{MODEL_NAME}:predict", json={"sequence": "too early"})
        assert refused.status_code == 503 and "not ready" in refused.text
        assert f'kserve_ansible_model_ready{{model="{MODEL_NAME}"}} 0.0' in server.get("/metrics").text

        gate.touch()
        server.wait_ready(MODEL_NAME)
        assert server.get("/v2/health/ready").json() == {"ready": True}
        answer = server.post(f"/v1/models/{MODEL_NAME}:predict", json={"sequence": "now"})
        assert answer.status_code == 200, answer.text
    finally:
        exit_code = server.stop()
    assert exit_code == 0, server.log()[-3000:]  # SIGTERM (as Kubernetes sends) is a clean shutdown


def test_hub_model_id_offline_fails_with_a_clear_error(tmp_path):
    server = ServerProcess(
        None,
        tmp_path / "server.log",
        "--model_id=example-org/no-such-sentiment-model",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")},
    )
    assert server.wait_exit() == 1
    log = server.log()
    assert "could not load the Hugging Face Hub model example-org/no-such-sentiment-model" in log
    assert "HF_HUB_OFFLINE is set" in log


def test_missing_model_directory_fails_with_a_clear_error(tmp_path):
    server = ServerProcess(str(tmp_path / "nothing-here"), tmp_path / "server.log")
    assert server.wait_exit() == 1
    assert f"model directory {tmp_path / 'nothing-here'} does not exist" in server.log()


def test_directory_without_a_model_fails_with_a_clear_error(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "README").write_text("not a model")
    server = ServerProcess(str(tmp_path / "model"), tmp_path / "server.log")
    assert server.wait_exit() == 1
    assert "has no config.json (found: ['README'])" in server.log()


# An hour's batching window: a forward pass starts only once a batch is full (--max_batch_size texts wait),
# so what waits in the queue is up to the test, not to how fast this machine is.
HOUR_MS = "--max_batch_wait_ms=3600000"


def test_an_overloaded_server_answers_503_at_once_and_still_serves_what_it_queued(tiny_model_dir, tmp_path):
    server = ServerProcess(
        tiny_model_dir, tmp_path / "server.log", HOUR_MS, "--max_batch_size=3", "--max_queued_texts=3"
    )
    predict = f"/v1/models/{MODEL_NAME}:predict"
    try:
        server.wait_ready(MODEL_NAME)
        with ThreadPoolExecutor(1) as pool:
            queued = pool.submit(server.post, predict, json={"instances": ["first", "second"]})
            # preprocessed means handed to the batcher (nothing awaits in between)
            server.wait_until(lambda: preprocessed(server) == 1, 30, "to queue the first request")
            refused = server.post(predict, json={"instances": ["one", "more"]})  # 2 + 2 texts > 3
            fills = server.post(predict, json={"sequence": "fills the batch"})  # 2 + 1: the batch runs
            served = queued.result()
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "server busy: 2 texts already wait for the model (limit 3)" in refused.json()["error"]
        assert served.status_code == 200, served.text
        assert len(served.json()["predictions"]) == 2
        assert fills.status_code == 200, fills.text
        metrics = server.get("/metrics").text
        assert f'code="503",model="{MODEL_NAME}",protocol="v1"}} 1.0' in metrics, metrics
        assert f'kserve_ansible_model_batch_size_sum{{model="{MODEL_NAME}"}} 3.0' in metrics, metrics
    finally:
        server.stop()


def test_a_request_whose_client_leaves_is_dropped_and_frees_its_place(tiny_model_dir, tmp_path):
    server = ServerProcess(
        tiny_model_dir, tmp_path / "server.log", HOUR_MS, "--max_batch_size=2", "--max_queued_texts=2"
    )
    predict = f"/v1/models/{MODEL_NAME}:predict"
    try:
        server.wait_ready(MODEL_NAME)
        body = json.dumps({"instances": ["left early"]}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as leaving:
            leaving.sendall(
                f"POST {predict} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            server.wait_until(lambda: preprocessed(server) == 1, 30, "to queue the first request")
        server.wait_until(lambda: "499" in counts(server), 30, "to notice the client has gone")
        # Its client gone, its text no longer counts: two texts fit the bound of 2 and fill the batch.
        answer = server.post(predict, json={"instances": ["stays", "here"]})
        assert answer.status_code == 200, answer.text
        assert counts(server) == {"499": 1.0, "200": 1.0}
        # one forward pass, of the two texts whose client waited
        assert (
            f'kserve_ansible_model_batch_size_sum{{model="{MODEL_NAME}"}} 2.0' in server.get("/metrics").text
        )
    finally:
        server.stop()


def preprocessed(server) -> float:
    """KServe's count of preprocessed requests: once preprocessed, a request is in the batcher's queue."""
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(f'request_preprocess_seconds_count{{model_name="{MODEL_NAME}"}}'):
            return float(line.split()[-1])
    return 0.0


def counts(server) -> dict[str, float]:
    """kserve_ansible_model_requests_total by code, for the v1 protocol."""
    found = {}
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("kserve_ansible_model_requests_total{") and 'protocol="v1"' in line:
            code = line.split('code="')[1].split('"')[0]
            found[code] = float(line.split()[-1])
    return found


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--workers=2", "--workers must be 1"),
        ("--max_batch_size=0", "--max_batch_size must be at least 1"),
        ("--max_queued_texts=0", "--max_queued_texts must be at least 1"),
    ],
)
def test_invalid_options_are_refused_at_start(tiny_model_dir, tmp_path, flag, message):
    server = ServerProcess(tiny_model_dir, tmp_path / "server.log", flag)
    assert server.wait_exit() == 2
    assert message in server.log()
