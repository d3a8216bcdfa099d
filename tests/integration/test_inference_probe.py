"""inference_probe against our real KServe model server (`python -m model.server` on a tiny model), run the
way Ansible runs it; and, on the local control plane with the serving platform installed, through the
cluster's ingress port with the Host header taken from the InferenceService's status.url."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.isvc_cluster import IsvcCluster
from tests.integration.module_runner import run_module
from tests.model.server_process import ServerProcess

pytestmark = pytest.mark.cluster

MODEL = "bert-sentiment"
TEXTS = ["I love this movie", "This was a terrible waste of time"]
OTHER_LABEL = {"POSITIVE": "NEGATIVE", "NEGATIVE": "POSITIVE"}


@pytest.fixture(scope="module")
def model_server(tiny_model_dir, tmp_path_factory):
    """Our model server (the image's own command, run locally) serving the tiny model as MODEL."""
    server = ServerProcess(
        tiny_model_dir, tmp_path_factory.mktemp("probe") / "server.log", f"--model_name={MODEL}"
    )
    try:
        server.wait_ready(MODEL, timeout=300)
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def labels(model_server):
    """What the tiny model (random but seeded weights) answers for TEXTS, asked with a plain request."""
    request = urllib.request.Request(
        f"{model_server}/v1/models/{MODEL}:predict",
        data=json.dumps({"instances": TEXTS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return [p["label"] for p in json.load(answer)["predictions"]]


class CountingHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.server.posts += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def counting_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    server.posts = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- against the model server


def test_v1_probe_checks_labels_and_measures_latency(model_server, labels):
    result = run_module(
        "inference_probe",
        {
            "url": model_server,
            "model_name": MODEL,
            "protocol": "v1",
            "instances": TEXTS,
            "expect": [{"label": label} for label in labels],
            "requests": 20,
            "concurrency": 4,
            "slo": {"p99_ms": 60000},
        },
    )
    assert not result.get("failed"), result.get("msg")
    assert result["status_codes"] == {"200": 20}
    assert len(result["latencies_ms"]) == 20
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["max"]
    assert [p["label"] for p in result["predictions"]] == labels
    assert all(0.0 <= p["score"] <= 1.0 for p in result["predictions"])


def test_v2_probe_rows_from_output_tensors(model_server, labels):
    result = run_module(
        "inference_probe",
        {
            "url": model_server,
            "model_name": MODEL,
            "protocol": "v2",
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS}],
            "expect": [{"label": label} for label in labels],
            "expect_response": {"model_name": MODEL},
        },
    )
    assert not result.get("failed"), result.get("msg")
    assert result["url"] == f"{model_server}/v2/models/{MODEL}/infer"
    assert [row["label"] for row in result["predictions"]] == labels


def test_raw_sequence_body(model_server, labels):
    result = run_module(
        "inference_probe",
        {
            "url": model_server,
            "model_name": MODEL,
            "protocol": "raw",
            "body": {"sequence": TEXTS[0]},
            "expect_response": {"predictions": [{"label": labels[0]}]},
        },
    )
    assert not result.get("failed"), result.get("msg")


def test_wrong_label_fails_with_a_readable_diff(model_server, labels):
    wrong = OTHER_LABEL[labels[1]]
    result = run_module(
        "inference_probe",
        {
            "url": model_server,
            "model_name": MODEL,
            "instances": TEXTS,
            "expect": [{"label": labels[0]}, {"label": wrong}],
        },
    )
    assert result["failed"]
    assert f'predictions[1].label: expected "{wrong}", got "{labels[1]}"' in result["msg"]
    assert "1 of 1 answers do not match the expectations" in result["msg"]


def test_latency_slo_violation_fails_with_the_measured_figure(model_server):
    result = run_module(
        "inference_probe",
        {
            "url": model_server,
            "model_name": MODEL,
            "instances": TEXTS,
            "requests": 3,
            "slo": {"max_ms": 0.001},
        },
    )
    assert result["failed"]
    assert (
        f"latency max {result['latency_ms']['max']:.1f} ms exceeds the SLO max_ms=0.001 ms" in result["msg"]
    )


# --------------------------------------------------------------------------- nothing sent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"protocol": "grpc", "instances": TEXTS}, "value of protocol must be one of: v1, v2, raw"),
        (
            {"protocol": "v2", "inputs": [{"name": "t", "shape": [3], "datatype": "BYTES", "data": TEXTS}]},
            "invalid probe, nothing sent: inputs[0] has 2 data elements but shape [3] needs 3",
        ),
        (
            {"instances": TEXTS, "expect": [{"label": "POSITIVE"}]},
            "invalid probe, nothing sent: expect has 1 entries but the request has 2 inputs",
        ),
        (
            {"instances": TEXTS, "requests": 2, "concurrency": 3},
            "concurrency must be between 1 and requests (2)",
        ),
    ],
)
def test_bad_inputs_fail_before_sending(counting_server, args, message):
    url = f"http://127.0.0.1:{counting_server.server_port}"
    result = run_module("inference_probe", {"url": url, "model_name": MODEL, **args})
    assert result["failed"]
    assert message in result["msg"]
    assert counting_server.posts == 0


def test_check_mode_sends_nothing_and_hides_secret_headers(counting_server):
    url = f"http://127.0.0.1:{counting_server.server_port}"
    result = run_module(
        "inference_probe",
        {
            "url": url,
            "model_name": MODEL,
            "instances": TEXTS,
            "headers": {"X-Api-Key": "s3cret"},
            "bearer_token": "t0k",
        },
        check=True,
    )
    assert not result.get("failed"), result.get("msg")
    assert result["requests"] == 0 and result["would_send"] == {"instances": TEXTS}
    assert counting_server.posts == 0
    assert "s3cret" not in json.dumps(result) and "t0k" not in json.dumps(result)


# --------------------------------------------------------------------------- on the local control plane

PROBE_NAMESPACE = "isvc-probe-test"
# Our model server's image: the local cluster runs it as a local process serving its tiny model (the same
# seeded weights as tiny_model_dir). ghcr.io: Knative skips resolving its tags (no registry here).
OUR_MODEL_IMAGE = "ghcr.io/kserve-ansible/kserve-ansible-model:dev"
# A container's args replace the image's CMD: the model's name and directory, as the models role passes them.
OUR_MODEL_ARGS = [f"--model_name={MODEL}", "--model_dir=/mnt/models", "--enable_grpc=false"]


@pytest.fixture(scope="module")
def served_isvc(serving_platform):
    """bert-sentiment as an InferenceService whose predictor is our model server, on the platform."""
    kube = IsvcCluster(serving_platform.kubeconfig, PROBE_NAMESPACE).set_up()
    kube.delete(MODEL)
    kube.create(MODEL, image=OUR_MODEL_IMAGE, args=OUR_MODEL_ARGS)
    ready = run_module("inference_service_wait", kube.module_args(MODEL, timeout=300))
    assert not ready.get("failed"), ready.get("msg")
    yield kube
    kube.tear_down()


def test_probe_finds_the_url_in_the_status_and_goes_through_the_ingress(local_cluster, served_isvc, labels):
    result = run_module(
        "inference_probe",
        served_isvc.module_args(
            MODEL,
            ingress_host="127.0.0.1",
            ingress_port=local_cluster.ingress_port,
            instances=TEXTS,
            expect=[{"label": label} for label in labels],
            requests=10,
            concurrency=2,
        ),
    )
    assert not result.get("failed"), result.get("msg")
    assert result["host_header"] == f"{MODEL}.{PROBE_NAMESPACE}.{local_cluster.domain}"
    assert result["url"] == f"http://127.0.0.1:{local_cluster.ingress_port}/v1/models/{MODEL}:predict"
    assert result["status_codes"] == {"200": 10}


def test_probe_of_an_unknown_inference_service_fails_clearly(served_isvc):
    result = run_module("inference_probe", served_isvc.module_args("no-such-model", instances=TEXTS))
    assert result["failed"]
    assert f"InferenceService {PROBE_NAMESPACE}/no-such-model not found" in result["msg"]
