"""``python -m model.tiny_model`` writes a model the Transformers Auto classes load, offline."""

from __future__ import annotations

import json
import pathlib


def test_tiny_model_loads_with_the_auto_classes(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    tokens = tokenizer(["Hello, my dog is cute"], return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(tokens["input_ids"][0].tolist())[:3] == ["[CLS]", "hello", ","]
    assert model(**tokens).logits.shape == (1, 2)


def test_tiny_model_is_small(tiny_model_dir):
    config = json.loads(pathlib.Path(tiny_model_dir, "config.json").read_text())
    assert config["model_type"] == "distilbert"
    total = sum(path.stat().st_size for path in pathlib.Path(tiny_model_dir).iterdir())
    assert total < 2_000_000
