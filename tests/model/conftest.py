"""Fixtures: a running model server (the tiny model itself comes from tests/conftest.py)."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.model.server_process import ServerProcess

MODEL_NAME = "bert-sentiment"


@pytest.fixture(scope="session")
def model_labels(tiny_model_dir) -> set[str]:
    """The labels the model's own config declares (id2label)."""
    config = json.loads(pathlib.Path(tiny_model_dir, "config.json").read_text())
    return set(config["id2label"].values())


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    """The model server (the image's command) serving the tiny model; stopped with SIGTERM at the end."""
    process = ServerProcess(tiny_model_dir, tmp_path_factory.mktemp("logs") / "server.log")
    try:
        process.wait_ready(MODEL_NAME)
        yield process
    finally:
        process.stop()
