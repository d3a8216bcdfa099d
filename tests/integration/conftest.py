"""Fixtures: the seed's model (``distilbert``) served by our model server, as a local process.

The tiny model comes from tests/conftest.py; the server process from ``tests/model`` (the image's own
command, run locally).
"""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.model.server_process import ServerProcess

SEED_MODEL_NAME = "distilbert"  # the model name in the seed's URLs: /v1/models/distilbert:predict


@pytest.fixture(scope="session")
def seed_model_server(tiny_model_dir, tmp_path_factory):
    """Our model server answering as the seed's ``distilbert`` model on a free loopback port."""
    process = ServerProcess(
        tiny_model_dir,
        tmp_path_factory.mktemp("seed-server") / "server.log",
        f"--model_name={SEED_MODEL_NAME}",
    )
    try:
        process.wait_ready(SEED_MODEL_NAME, timeout=300)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def seed_model_labels(tiny_model_dir) -> list[str]:
    """The model's labels in class-id order, from its config (id2label)."""
    id2label = json.loads(pathlib.Path(tiny_model_dir, "config.json").read_text())["id2label"]
    return [id2label[str(class_id)] for class_id in range(len(id2label))]
