"""Find and load a sequence classifier: a local directory (PVC / storage-initializer mount) or a Hub id."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says why and what to do."""


@dataclass
class LoadedClassifier:
    tokenizer: Any
    model: Any
    labels: dict[int, str]
    max_length: int
    source: str
    forward_inputs: frozenset[str] | None = None  # what model.forward accepts; None: anything (**kwargs)

    def model_inputs(self, tokens) -> dict:
        """The tokenizer's outputs the model takes: a generic tokenizer may add inputs (``token_type_ids``)
        that this model's forward has no parameter for (DistilBERT)."""
        if self.forward_inputs is None:
            return dict(tokens)
        return {name: value for name, value in tokens.items() if name in self.forward_inputs}


def forward_inputs(model) -> frozenset[str] | None:
    """Names of the parameters of ``model.forward``, or None when it takes any keyword (``**kwargs``)."""
    parameters = inspect.signature(model.forward).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return frozenset(parameter.name for parameter in parameters)


def _max_length(tokenizer, config) -> int:
    """Longest input the model accepts: tokenizers often report a huge sentinel, the config knows better."""
    limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
    return min(limit for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000)


def _from_pretrained(location: str, revision: str | None) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    model = AutoModelForSequenceClassification.from_pretrained(location, revision=revision)
    return tokenizer, model.eval()


def _check_local_dir(model_dir: str) -> None:
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelLoadError(
            f"model directory {model_dir} does not exist: mount the model there (storageUri / PVC) "
            "or pass --model_dir DIR, or --model_id ORG/NAME to load from the Hugging Face Hub"
        )
    if not (path / "config.json").is_file():
        found = sorted(p.name for p in path.iterdir())[:20]
        raise ModelLoadError(
            f"model directory {model_dir} has no config.json (found: {found or 'nothing'}): "
            "expected a directory written by save_pretrained() with the model and its tokenizer"
        )


def load_classifier(model_dir: str | None, model_id: str | None = None, revision: str | None = None):
    """Load tokenizer + model from ``model_id`` (Hub) if given, else from the local ``model_dir``."""
    if model_id:
        source = f"Hugging Face Hub model {model_id}" + (f"@{revision}" if revision else "")
        try:
            tokenizer, model = _from_pretrained(model_id, revision)
        except (OSError, ValueError) as error:
            hint = ""
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
                hint = (
                    " HF_HUB_OFFLINE is set, so only models already in the local Hugging Face cache can be "
                    "loaded: mount the model and use --model_dir, or unset HF_HUB_OFFLINE."
                )
            raise ModelLoadError(f"could not load the {source}: {error}.{hint}") from error
    else:
        if not model_dir:
            raise ModelLoadError("no model given: pass --model_dir DIR or --model_id ORG/NAME")
        source = f"directory {model_dir}"
        _check_local_dir(model_dir)
        try:
            tokenizer, model = _from_pretrained(model_dir, None)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the model in {source}: {error}") from error
    labels = {int(index): str(name) for index, name in model.config.id2label.items()}
    max_length = _max_length(tokenizer, model.config)
    return LoadedClassifier(tokenizer, model, labels, max_length, source, forward_inputs(model))
