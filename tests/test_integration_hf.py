"""Integration tests for a served sentiment model: the seed's ``huggingface-distilbert`` InferenceService.

They talk HTTP to a running model, in a cluster or on this machine, exactly as a client does:
health and readiness, model metadata, v1 and v2 (Open Inference Protocol) predictions with label and
score sanity, batches, bad requests (4xx, never 5xx), and the ``/docs`` page.

Run against a cluster (the seed's example; the URL is the InferenceService's ``status.url``)::

    KSA_TARGET_URL=http://huggingface-distilbert.kserve-test.139.59.55.131.sslip.io \\
        python -m unittest tests/test_integration_hf.py

through an ingress addressed by IP, routing by Host header::

    KSA_TARGET_URL=http://127.0.0.1:8080 KSA_HOST_HEADER=huggingface-distilbert.kserve-test.example.com \\
        python -m unittest tests/test_integration_hf.py

or against a local model server (``python -m model.server --model_name distilbert --model_dir DIR
--http_port 8080 --enable_docs_url=true``) with no settings at all.

Settings (environment variables):

- ``KSA_TARGET_URL``: base URL of the model (default ``http://127.0.0.1:8080``)
- ``KSA_HOST_HEADER``: Host header to send, for an ingress that routes by host name (default: none)
- ``KSA_MODEL_NAME``: model name in the request paths (default ``distilbert``, as in the seed)
- ``KSA_LABELS``: the model's labels in class-id order, comma separated (default ``NEGATIVE,POSITIVE``)
- ``KSA_TIMEOUT``: seconds to connect and to wait for each answer (default 10)
- ``KSA_READY_TIMEOUT``: seconds to wait for the model to become ready, e.g. a scale-from-zero start
  (default 60)

Before any test runs, the suite checks once that something answers at the URL: when nothing does
(connection refused, unknown host, no answer in time) it stops at once with one clear message instead of
failing every test. Answers may carry labels and scores (our model server) or only class ids (KServe's
stock Hugging Face runtime): both are checked against ``KSA_LABELS``.

pytest collects this file too, but runs it only when ``KSA_TARGET_URL`` is set; CI runs it through
``tests/integration/test_seed_suites.py``, which starts a local model server for it.
"""

from __future__ import annotations

import json
import math
import os
import time
import unittest
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests

SEED_TEXTS = ["Hello, my dog is cute", "I am feeling happy"]
BATCH_TEXTS = [
    "This movie was wonderful and the actors were great.",
    "The food was terrible and the service was slow.",
    "I love this product, it works exactly as described.",
    "What a waste of time, I want my money back.",
    "The weather is nice today.",
    "Nothing works and nobody answers the phone.",
    "Thank you so much for the kind and thoughtful gift.",
    "It is an average film, neither good nor bad.",
]
SCORE_TOLERANCE = 1e-3  # a text scored alone and inside a padded batch: float noise only


@dataclass(frozen=True)
class Target:
    """Where the model is and how to address it, read from the environment."""

    url: str = "http://127.0.0.1:8080"
    host_header: str | None = None
    model_name: str = "distilbert"
    labels: tuple[str, ...] = ("NEGATIVE", "POSITIVE")
    timeout: float = 10.0
    ready_timeout: float = 60.0
    session: requests.Session = field(default_factory=requests.Session, compare=False, repr=False)

    @classmethod
    def from_environment(cls) -> Target:
        env = os.environ
        defaults = cls()
        labels = env.get("KSA_LABELS")
        return cls(
            url=env.get("KSA_TARGET_URL", defaults.url).rstrip("/"),
            host_header=env.get("KSA_HOST_HEADER") or None,
            model_name=env.get("KSA_MODEL_NAME", defaults.model_name),
            labels=tuple(label.strip() for label in labels.split(",")) if labels else defaults.labels,
            timeout=_seconds(env, "KSA_TIMEOUT", defaults.timeout),
            ready_timeout=_seconds(env, "KSA_READY_TIMEOUT", defaults.ready_timeout),
        )

    def describe(self) -> str:
        host = f" (Host: {self.host_header})" if self.host_header else ""
        return f"{self.url}{host}"

    def request(
        self, method: str, path: str, read_timeout: float | None = None, **kwargs
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.host_header:
            headers["Host"] = self.host_header
        timeout = (self.timeout, read_timeout or self.timeout)
        return self.session.request(method, self.url + path, headers=headers, timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


TARGET = Target.from_environment()


class TargetUnavailable(AssertionError):
    """Nothing usable answers at the target: the whole suite stops with this message."""


def wait_until_model_ready(target: Target) -> None:
    """Return once ``/v1/models/NAME`` answers 200; fail at once when nothing answers at all."""
    path = f"/v1/models/{target.model_name}"
    deadline = time.monotonic() + target.ready_timeout
    while True:
        try:
            answer = target.get(path, read_timeout=target.ready_timeout)
        except requests.ConnectionError as error:
            raise TargetUnavailable(
                f"cannot connect to {target.describe()}: {error}. Is the model server or ingress running? "
                "Set KSA_TARGET_URL (and KSA_HOST_HEADER) to where the model is served."
            ) from None
        except requests.Timeout:
            raise TargetUnavailable(
                f"{target.describe()} accepted no connection or gave no answer to GET {path} in time "
                "(KSA_TIMEOUT / KSA_READY_TIMEOUT)."
            ) from None
        if answer.status_code == 200:
            return
        if time.monotonic() >= deadline:
            raise TargetUnavailable(
                f"model {target.model_name!r} at {target.describe()} not ready after "
                f"{target.ready_timeout:g}s (KSA_READY_TIMEOUT): GET {path} answered "
                f"{answer.status_code} {answer.text[:300]!r}. Check KSA_MODEL_NAME and the "
                "InferenceService's status."
            )
        time.sleep(1)


def setUpModule():  # unittest's hook: runs once, before the first test
    wait_until_model_ready(TARGET)


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float | None  # None when the server answers class ids only


class ServedModelTestCase(unittest.TestCase):
    """Shared request helpers and checks; pytest runs these tests only with an explicit target."""

    __test__ = "KSA_TARGET_URL" in os.environ
    target = TARGET

    @property
    def model_path(self) -> str:
        return f"/models/{self.target.model_name}"

    def json_of(self, answer: requests.Response, status: int = 200):
        request = answer.request
        self.assertEqual(
            answer.status_code,
            status,
            f"{request.method} {request.path_url} answered {answer.status_code}: {answer.text[:500]}",
        )
        try:
            return answer.json()
        except ValueError:
            self.fail(f"{answer.request.path_url} answered non-JSON: {answer.text[:500]!r}")

    def predict_v1(self, texts: list[str]) -> list[Prediction]:
        body = self.json_of(self.target.post(f"/v1{self.model_path}:predict", json={"instances": texts}))
        self.assertIsInstance(body.get("predictions"), list, f"v1 answer without a predictions list: {body}")
        return [self.prediction_from_v1(item) for item in body["predictions"]]

    def infer_v2(self, texts: list[str], request_id: str | None = None) -> tuple[dict, list[Prediction]]:
        request = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
        if request_id is not None:
            request["id"] = request_id
        body = self.json_of(self.target.post(f"/v2{self.model_path}/infer", json=request))
        return body, self.predictions_from_v2(body)

    def label_of_class(self, class_id) -> str:
        self.assertIsInstance(class_id, int, f"class id must be an integer, got {class_id!r}")
        self.assertIn(class_id, range(len(self.target.labels)), f"class id {class_id} outside KSA_LABELS")
        return self.target.labels[class_id]

    def prediction_from_v1(self, item) -> Prediction:
        if isinstance(item, dict) and "label" in item:
            return Prediction(item["label"], item.get("score"))
        return Prediction(self.label_of_class(item), None)

    def predictions_from_v2(self, body: dict) -> list[Prediction]:
        outputs = {output["name"]: output for output in body.get("outputs", [])}
        self.assertTrue(outputs, f"v2 answer without outputs: {body}")
        for output in outputs.values():
            self.assertEqual(
                math.prod(output["shape"]), len(output["data"]), f"shape/data mismatch: {output}"
            )
        if "label" in outputs:
            labels = outputs["label"]["data"]
            scores = outputs["score"]["data"] if "score" in outputs else [None] * len(labels)
            self.assertEqual(len(labels), len(scores), f"label and score outputs differ in length: {body}")
            return [Prediction(label, score) for label, score in zip(labels, scores, strict=True)]
        self.assertEqual(len(outputs), 1, f"expected label/score outputs or one class-id output: {body}")
        (output,) = outputs.values()
        return [Prediction(self.label_of_class(class_id), None) for class_id in output["data"]]

    def assert_sane(self, predictions: list[Prediction], texts: list[str]) -> None:
        """One prediction per text, each a known label with a probability-like score."""
        self.assertEqual(len(predictions), len(texts), f"{len(texts)} texts, answers: {predictions}")
        for prediction in predictions:
            self.assertIn(prediction.label, self.target.labels, f"unknown label in {prediction}")
            if prediction.score is not None:
                self.assertIsInstance(prediction.score, float)
                # the top class of N classes has probability >= 1/N
                self.assertGreaterEqual(prediction.score, 1 / len(self.target.labels) - SCORE_TOLERANCE)
                self.assertLessEqual(prediction.score, 1.0)

    def assert_same_answers(self, first: list[Prediction], second: list[Prediction]) -> None:
        self.assertEqual([p.label for p in first], [p.label for p in second])
        for a, b in zip(first, second, strict=True):
            if a.score is not None and b.score is not None:
                self.assertAlmostEqual(a.score, b.score, delta=SCORE_TOLERANCE)


class HealthTest(ServedModelTestCase):
    def test_server_is_live(self):
        self.assertEqual(self.json_of(self.target.get("/v2/health/live")), {"live": True})

    def test_server_is_ready(self):
        self.assertEqual(self.json_of(self.target.get("/v2/health/ready")), {"ready": True})

    def test_model_is_ready_v1(self):
        body = self.json_of(self.target.get(f"/v1{self.model_path}"))
        self.assertEqual(body, {"name": self.target.model_name, "ready": True})

    def test_model_is_ready_v2(self):
        body = self.json_of(self.target.get(f"/v2{self.model_path}/ready"))
        self.assertEqual(body, {"name": self.target.model_name, "ready": True})


class ModelMetadataTest(ServedModelTestCase):
    def test_model_metadata_names_the_model(self):
        body = self.json_of(self.target.get(f"/v2{self.model_path}"))
        self.assertEqual(body["name"], self.target.model_name)
        for tensor in body.get("inputs") or []:
            self.assertEqual(set(tensor), {"name", "datatype", "shape"}, f"input tensor metadata: {tensor}")

    def test_server_metadata_says_kserve(self):
        body = self.json_of(self.target.get("/v2"))
        self.assertEqual(body["name"], "kserve")
        self.assertTrue(body["version"], body)

    def test_unknown_model_is_not_found(self):
        missing = f"no-such-model-{uuid.uuid4().hex[:8]}"
        self.assertEqual(self.target.get(f"/v1/models/{missing}").status_code, 404)
        self.assertEqual(self.target.get(f"/v2/models/{missing}").status_code, 404)


class V1PredictionTest(ServedModelTestCase):
    def test_seed_request_gets_a_label_per_text(self):
        self.assert_sane(self.predict_v1(SEED_TEXTS), SEED_TEXTS)

    def test_batch_answers_each_text_in_order(self):
        batch = self.predict_v1(BATCH_TEXTS)
        self.assert_sane(batch, BATCH_TEXTS)
        one_by_one = [self.predict_v1([text])[0] for text in BATCH_TEXTS]
        self.assert_same_answers(batch, one_by_one)

    def test_same_text_gets_the_same_answer(self):
        first, second = self.predict_v1([SEED_TEXTS[0], SEED_TEXTS[0]])
        self.assert_same_answers([first], [second])


class V2InferenceTest(ServedModelTestCase):
    def test_seed_texts_get_a_label_per_text(self):
        _, predictions = self.infer_v2(SEED_TEXTS)
        self.assert_sane(predictions, SEED_TEXTS)

    def test_answer_names_the_model_and_echoes_the_request_id(self):
        request_id = f"ksa-integration-{uuid.uuid4().hex[:8]}"
        body, _ = self.infer_v2(SEED_TEXTS, request_id=request_id)
        self.assertEqual(body["model_name"], self.target.model_name)
        self.assertEqual(body["id"], request_id)

    def test_v1_and_v2_agree(self):
        _, v2 = self.infer_v2(BATCH_TEXTS)
        self.assert_sane(v2, BATCH_TEXTS)
        self.assert_same_answers(v2, self.predict_v1(BATCH_TEXTS))


class BadRequestTest(ServedModelTestCase):
    """A client's mistake gets a 4xx answer with an error message, never a 5xx."""

    def assert_refused(self, answer: requests.Response) -> None:
        self.assertIn(
            answer.status_code, range(400, 500), f"answered {answer.status_code}: {answer.text[:500]}"
        )
        body = answer.json()
        # KServe's own refusals say {"error": ...}; FastAPI's request validation (422) says {"detail": ...}
        self.assertTrue(body.get("error") or body.get("detail"), f"4xx answer without a message: {body}")

    def test_body_that_is_not_json(self):
        answer = self.target.post(
            f"/v1{self.model_path}:predict", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        self.assert_refused(answer)

    def test_v1_body_without_instances(self):
        self.assert_refused(self.target.post(f"/v1{self.model_path}:predict", json={"texts": SEED_TEXTS}))

    def test_v2_input_that_is_not_text(self):
        request = {"inputs": [{"name": "text", "shape": [2], "datatype": "FP32", "data": [0.5, 1.5]}]}
        self.assert_refused(self.target.post(f"/v2{self.model_path}/infer", json=request))

    def test_v2_request_without_inputs(self):
        self.assert_refused(self.target.post(f"/v2{self.model_path}/infer", json={"id": "no-inputs"}))


class DocsTest(ServedModelTestCase):
    """The API docs page the seed enables with ``--enable_docs_url=True``."""

    def test_docs_page_is_served(self):
        answer = self.target.get("/docs")
        self.assertEqual(
            answer.status_code, 200, "no /docs: is the model started with --enable_docs_url=True?"
        )
        self.assertIn("text/html", answer.headers.get("Content-Type", ""))
        self.assertIn("swagger", answer.text.lower())

    def test_openapi_schema_lists_the_inference_routes(self):
        schema = self.json_of(self.target.get("/openapi.json"))
        paths = set(schema["paths"])
        self.assertIn("/v1/models/{model_name}:predict", paths, json.dumps(sorted(paths)))
        self.assertIn("/v2/models/{model_name}/infer", paths, json.dumps(sorted(paths)))


if __name__ == "__main__":
    unittest.main()
