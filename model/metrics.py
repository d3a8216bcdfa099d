"""Prometheus metrics of the model server, served on ``/metrics`` next to KServe's own.

KServe already exports ``request_preprocess_seconds``, ``request_predict_seconds`` and
``request_postprocess_seconds`` (label ``model_name``) for requests that reach the model. These add
what an operator asks first: how many requests, which answers (including the 4xx refused before the
model sees them), how long end to end, and how well concurrent requests are batched.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "kserve_ansible_model"

REQUESTS = Counter(
    f"{PREFIX}_requests",  # exported as kserve_ansible_model_requests_total
    "Inference requests answered, by model, protocol (v1|v2) and HTTP status code.",
    ["model", "protocol", "code"],
)
REQUEST_DURATION = Histogram(
    f"{PREFIX}_request_duration_seconds",
    "Time from receiving an inference request to the end of its answer.",
    ["model", "protocol"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    f"{PREFIX}_batch_size",
    "Texts per forward pass (concurrent requests are batched together).",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
FORWARD_DURATION = Histogram(
    f"{PREFIX}_forward_pass_seconds",
    "Time of one batched tokenize + forward pass.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MODEL_READY = Gauge(f"{PREFIX}_ready", "1 when the model is loaded and serving, else 0.", ["model"])
