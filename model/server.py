"""KServe model server for Transformers sequence classification (``bert-sentiment``).

Run: ``python -m model.server --model_name bert-sentiment --model_dir /mnt/models`` (see model/README.md).

The model follows KServe's ``kserve.Model`` lifecycle: ``load`` -> ``preprocess`` -> ``predict`` ->
``postprocess``; ``kserve.ModelServer`` serves HTTP, health and ``/metrics``. The server listens while
the model loads: ``/v1/models/NAME`` (and ``/v2/health/ready``) answer 503 until ``load`` has finished.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import kserve
import torch
from fastapi.responses import JSONResponse
from kserve import model_server as kserve_model_server
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.logging import logger
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, RequestedOutput

from model.batching import MicroBatcher, Overloaded
from model.cpu import compute_threads
from model.grpc_server import GuardedModelServer
from model.inputs import texts_from_v1, texts_from_v2
from model.loading import LoadedClassifier, ModelLoadError, load_classifier
from model.metrics import BATCH_SIZE, FORWARD_DURATION, MODEL_READY
from model.middleware import InternalErrorMiddleware, RequestGuardMiddleware, RequestMetricsMiddleware

DEFAULT_MODEL_DIR = "/mnt/models"  # where KServe's storage-initializer puts a storageUri's files
V1_EXAMPLES = {  # the seed's requests, shown in /docs
    "sequence": {"sequence": "hello I am doing good"},
    "instances": {"instances": ["Hello, my dog is cute", "I am feeling happy"]},
}


@dataclass
class ServingSettings:
    threads: int = 1
    max_batch_size: int = 32
    max_batch_wait_seconds: float = 0.0
    max_instances: int = 64
    max_queued_texts: int = 256


@dataclass
class Texts:
    """Preprocessed request: the texts, and the v2 request they came from (None for v1)."""

    texts: list[str]
    v2_request: InferRequest | None = None


@dataclass
class Predictions:
    labels: list[str]
    scores: list[float]
    v2_request: InferRequest | None = None


class SentimentModel(kserve.Model):
    """A Transformers sequence classifier answering label + score for each text."""

    def __init__(
        self,
        name: str,
        model_dir: str | None,
        model_id: str | None = None,
        revision: str | None = None,
        settings: ServingSettings | None = None,
    ):
        super().__init__(name)
        self.model_dir = model_dir
        self.model_id = model_id
        self.revision = revision
        self.settings = settings or ServingSettings()
        self.classifier: LoadedClassifier | None = None
        self.batcher: MicroBatcher | None = None
        MODEL_READY.labels(name).set(0)

    def load(self) -> bool:
        self.classifier = load_classifier(self.model_dir, self.model_id, self.revision)
        self.batcher = MicroBatcher(
            self.classify,
            max_batch_size=self.settings.max_batch_size,
            max_wait_seconds=self.settings.max_batch_wait_seconds,
            on_batch=BATCH_SIZE.labels(self.name).observe,
            thread_initializer=lambda: torch.set_num_threads(self.settings.threads),
            max_queued_items=self.settings.max_queued_texts,
        )
        self.ready = True
        MODEL_READY.labels(self.name).set(1)
        logger.info(
            "model %s loaded from %s: labels %s, max length %d tokens, %d compute threads",
            self.name,
            self.classifier.source,
            sorted(self.classifier.labels.values()),
            self.classifier.max_length,
            self.settings.threads,
        )
        return self.ready

    def stop(self) -> None:
        self.ready = False
        MODEL_READY.labels(self.name).set(0)
        if self.batcher is not None:
            self.batcher.close()

    def classify(self, texts: list[str]) -> list[tuple[str, float]]:
        """Tokenize (truncating to the model's max length) and run one forward pass for all texts."""
        start = time.perf_counter()
        classifier = self.classifier
        tokens = classifier.tokenizer(
            texts, padding=True, truncation=True, max_length=classifier.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = classifier.model(**classifier.model_inputs(tokens)).logits
        scores, label_ids = logits.softmax(dim=-1).max(dim=-1)
        FORWARD_DURATION.labels(self.name).observe(time.perf_counter() - start)
        return [
            (classifier.labels[label_id], score)
            for label_id, score in zip(label_ids.tolist(), scores.tolist(), strict=True)
        ]

    async def preprocess(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> Texts:
        if isinstance(payload, InferRequest):
            return Texts(texts_from_v2(payload, self.settings.max_instances), payload)
        return Texts(texts_from_v1(payload, self.settings.max_instances))

    async def predict(self, payload: Texts, headers: dict[str, str] | None = None) -> Predictions:
        results = await self.batcher.submit(payload.texts)
        labels = [label for label, _ in results]
        return Predictions(labels, [score for _, score in results], payload.v2_request)

    async def postprocess(
        self, result: Predictions, headers: dict[str, str] | None = None, response_headers=None
    ) -> dict[str, Any] | InferResponse:
        if result.v2_request is None:
            return {
                "predictions": [
                    {"label": label, "score": score}
                    for label, score in zip(result.labels, result.scores, strict=True)
                ]
            }
        request = result.v2_request
        count = len(result.labels)
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[
                InferOutput(name="label", shape=[count], datatype="BYTES", data=result.labels),
                InferOutput(name="score", shape=[count], datatype="FP32", data=result.scores),
            ],
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=requested_outputs(request),
        )

    def get_input_types(self) -> list[dict]:
        return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ]


def requested_outputs(request: InferRequest) -> list[RequestedOutput] | None:
    """The request's outputs; over REST, one without its own ``binary_data`` parameter follows the request's
    ``binary_data_output`` (the binary tensor extension's rule, which KServe 0.14 applies only without
    ``outputs``)."""
    outputs = request.request_outputs
    if not outputs or request.from_grpc:
        return outputs
    default = bool(request.use_binary_outputs)
    return [
        RequestedOutput(output.name, {"binary_data": default, **(output.parameters or {})})
        for output in outputs
    ]


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server options (--http_port, --model_name, --enable_docs_url, ...) plus ours."""
    parser = argparse.ArgumentParser(
        prog="python -m model.server",
        description=__doc__.splitlines()[0],
        parents=[kserve_model_server.parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_dir",
        default=DEFAULT_MODEL_DIR,
        help="local directory with the model and tokenizer (save_pretrained layout), e.g. a PVC mount",
    )
    parser.add_argument(
        "--model_id", default=None, help="Hugging Face Hub model id (ORG/NAME); replaces --model_dir when set"
    )
    parser.add_argument("--model_revision", default=None, help="Hub branch, tag or commit for --model_id")
    parser.add_argument(
        "--num_threads",
        type=int,
        default=None,
        help="compute threads (default: MODEL_NUM_THREADS, else the container's CPU limit from the cgroup)",
    )
    parser.add_argument("--max_batch_size", type=int, default=32, help="most texts in one forward pass")
    parser.add_argument(
        "--max_batch_wait_ms",
        type=float,
        default=0.0,
        help="how long a forward pass waits for more requests to join it, at most until a batch is full "
        "(0: start when the model is free)",
    )
    parser.add_argument("--max_instances", type=int, default=64, help="most texts accepted in one request")
    parser.add_argument(
        "--max_queued_texts",
        type=int,
        default=256,
        help="most texts waiting for the model; beyond it requests get 503 at once instead of queueing",
    )
    parser.add_argument("--max_request_bytes", type=int, default=1 << 20, help="largest request body")
    parser.add_argument(
        "--load_delay_seconds",
        type=float,
        default=0.0,
        help="wait this long before loading the model (to exercise readiness probes and rollouts)",
    )
    parser.add_argument(
        "--load_after_file",
        default=None,
        help="load the model only once this file exists (a readiness gate: kubectl exec ... touch FILE)",
    )
    return parser


def add_http_extras(app, model: SentimentModel, max_request_bytes: int) -> None:
    """Request metrics, size limits, 503 when overloaded, generic 500s, a truthful /v2/health/ready and
    request examples in /docs."""
    app.add_middleware(InternalErrorMiddleware, logger=logger)  # innermost of ours: errors are counted as 500
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=max_request_bytes)
    app.add_middleware(RequestMetricsMiddleware, served_models=lambda: {model.name})

    async def overloaded(_request, error: Overloaded):
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": "1"})

    app.add_exception_handler(Overloaded, overloaded)

    async def server_ready():
        """Ready when the model has loaded (KServe 0.14's own answer is always "ready")."""
        return JSONResponse({"ready": model.ready}, status_code=200 if model.ready else 503)

    # Registered before KServe's routes (added at start), so this one answers.
    app.add_api_route("/v2/health/ready", server_ready, methods=["GET"], tags=["V2"])
    original_openapi = app.openapi

    def openapi_with_examples():
        if app.openapi_schema is None:
            schema = original_openapi()
            predict = schema["paths"].get("/v1/models/{model_name}:predict", {}).get("post")
            if predict is not None:
                predict["description"] = (
                    f'Classify texts with model "{model.name}". '
                    'Answer: {"predictions": [{"label": ..., "score": ...}, ...]}'
                )
                predict["requestBody"] = {
                    "content": {
                        "application/json": {
                            "schema": {"type": "object"},
                            "examples": {name: {"value": value} for name, value in V1_EXAMPLES.items()},
                        }
                    }
                }
        return app.openapi_schema

    app.openapi = openapi_with_examples


class RefusedRequestLogFilter(logging.Filter):
    """KServe logs a full traceback for every refused request; a client's mistake needs one line."""

    CLIENT_ERRORS = (InvalidInput, ModelNotFound, ModelNotReady)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.CLIENT_ERRORS):
            record.msg, record.args = "request refused: %s", (record.exc_info[1],)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def load_in_background(
    model: SentimentModel, delay_seconds: float, after_file: str | None = None
) -> threading.Thread:
    """Load while the server already answers health checks; exit the process if loading fails."""

    def run():
        try:
            if delay_seconds:
                time.sleep(delay_seconds)
            if after_file:
                logger.info("model %s loads once %s exists", model.name, after_file)
                while not os.path.exists(after_file):
                    time.sleep(0.1)
            model.load()
        except ModelLoadError as error:
            logger.error("model %s failed to load: %s", model.name, error)
            os._exit(1)
        except Exception:
            logger.exception("model %s failed to load", model.name)
            os._exit(1)

    thread = threading.Thread(target=run, name="model-load", daemon=True)
    thread.start()
    return thread


def main() -> None:
    # KServe 0.14's endpoints use ORJSONResponse, which this FastAPI deprecates: one warning per process
    # that says nothing to an operator.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    parser = build_parser()
    args = parser.parse_args()
    if args.workers != 1:
        parser.error("--workers must be 1: one process serves the model and batches concurrent requests")
    for option in ("max_batch_size", "max_instances", "max_queued_texts", "max_request_bytes"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.max_batch_wait_ms < 0:
        parser.error("--max_batch_wait_ms must not be negative")
    try:
        threads = compute_threads(args.num_threads)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    settings = ServingSettings(
        threads=threads,
        max_batch_size=args.max_batch_size,
        max_batch_wait_seconds=args.max_batch_wait_ms / 1000,
        max_instances=args.max_instances,
        max_queued_texts=args.max_queued_texts,
    )
    model = SentimentModel(args.model_name, args.model_dir, args.model_id, args.model_revision, settings)
    server = GuardedModelServer(
        grpc_options=vars(args),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
    )
    logger.addFilter(RefusedRequestLogFilter())
    model.enable_latency_logging = args.enable_latency_logging
    server.register_model(model)  # registered before it is ready: /v1/models/NAME says 503 until load() ends
    add_http_extras(kserve_model_server.app, model, args.max_request_bytes)
    load_in_background(model, args.load_delay_seconds, args.load_after_file)
    server.start([])


if __name__ == "__main__":
    main()
