"""``python -m model.tiny_model`` writes a model the Transformers Auto classes load, offline."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

LOAD_WITH_AUTO_CLASSES = """
import json, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
tokens = tokenizer(["Hello, my dog is cute"], return_tensors="pt")
print(json.dumps({
    "id2label": model.config.id2label,
    "first_tokens": tokenizer.convert_ids_to_tokens(tokens["input_ids"][0].tolist())[:3],
    "logits_shape": list(model(**tokens).logits.shape),
}))
"""


def test_tiny_model_loads_with_the_auto_classes(tiny_model_dir):
    # A fresh interpreter, as a user loads it (this pytest process has ansible's sys.intern patch, which
    # torch._dynamo's import refuses).
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_AUTO_CLASSES, tiny_model_dir],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert loaded["first_tokens"] == ["[CLS]", "hello", ","]
    assert loaded["logits_shape"] == [1, 2]


def test_tiny_model_is_small(tiny_model_dir):
    config = json.loads(pathlib.Path(tiny_model_dir, "config.json").read_text())
    assert config["model_type"] == "distilbert"
    total = sum(path.stat().st_size for path in pathlib.Path(tiny_model_dir).iterdir())
    assert total < 2_000_000
