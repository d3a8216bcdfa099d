"""Model directories as users bring them, built on the fly from the tiny model: a generic tokenizer whose
outputs the model does not take, and a tokenizer that does not fit its model (an internal error: answered
with a generic 500, the traceback in the log, never a Python exception to the client)."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from model.middleware import INTERNAL_ERROR
from tests.model.conftest import MODEL_NAME
from tests.model.server_process import ServerProcess

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
INFER = f"/v2/models/{MODEL_NAME}/infer"


def model_copy(tiny_model_dir: str, target: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(tiny_model_dir, target))


def edit_json(path: pathlib.Path, edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.fixture
def started(tmp_path):
    servers = []

    def start(model_dir: pathlib.Path) -> ServerProcess:
        server = ServerProcess(str(model_dir), tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        server.wait_ready(MODEL_NAME)
        return server

    yield start
    for server in servers:
        server.stop()


def test_generic_tokenizer_with_token_type_ids_serves_a_distilbert(
    tiny_model_dir, tmp_path, started, model_labels
):
    """BertTokenizerFast emits token_type_ids; DistilBERT's forward has no such parameter."""
    model_dir = model_copy(tiny_model_dir, tmp_path / "generic-tokenizer")
    edit_json(
        model_dir / "tokenizer_config.json", lambda config: config.update(tokenizer_class="BertTokenizer")
    )
    server = started(model_dir)
    response = server.post(PREDICT, json={"instances": ["Hello, my dog is cute", "I am feeling happy"]})
    assert response.status_code == 200, response.text
    assert {prediction["label"] for prediction in response.json()["predictions"]} <= model_labels
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}
    assert server.post(INFER, json=body).status_code == 200


def test_internal_error_is_a_generic_500_with_the_traceback_in_the_log(tiny_model_dir, tmp_path, started):
    """A tokenizer with a token id beyond the model's embedding table: the forward pass fails (IndexError)."""
    model_dir = model_copy(tiny_model_dir, tmp_path / "mismatched-tokenizer")
    edit_json(model_dir / "tokenizer.json", lambda tokenizer: tokenizer["model"]["vocab"].update(zebra=5000))
    server = started(model_dir)
    for path, body in (
        (PREDICT, {"sequence": "a zebra"}),
        (INFER, {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a zebra"]}]}),
    ):
        response = server.post(path, json=body)
        assert response.status_code == 500, response.text
        assert response.json() == {"error": INTERNAL_ERROR}
    log = server.log()
    assert "Traceback" in log and "IndexError" in log
    assert 'code="500"' in server.get("/metrics").text
    assert server.post(PREDICT, json={"sequence": "hello"}).status_code == 200  # other texts still served
