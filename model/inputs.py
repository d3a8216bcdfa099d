"""Turn the request shapes users send into a list of texts, or refuse them with a clear 400.

Accepted on ``/v1/models/NAME:predict`` (JSON object):

- ``{"sequence": "text"}`` or ``{"sequence": ["text", ...]}`` (the seed's custom model request)
- ``{"instances": ["text", ...]}`` (KServe v1 protocol)

Accepted on ``/v2/models/NAME/infer`` (Open Inference Protocol): one ``BYTES`` input tensor whose
elements are the texts (any input name, any shape whose element count matches the data).

Every refusal raises ``kserve.errors.InvalidInput``, which KServe answers with HTTP 400 and
``{"error": message}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

V1_FIELDS = ("sequence", "instances")


def _check_count(count: int, where: str, max_instances: int) -> None:
    if count == 0:
        raise InvalidInput(f"{where} is empty: send at least one text")
    if count > max_instances:
        raise InvalidInput(
            f"{where} has {count} texts, more than the limit of {max_instances} per request: "
            "split the request"
        )


def _texts(values: Iterable[Any], where: str) -> list[str]:
    texts = []
    for index, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidInput(f"{where}[{index}] is not valid UTF-8: {error}") from None
        if not isinstance(value, str):
            raise InvalidInput(f"{where}[{index}] must be a string, got {_json_type(value)}")
        texts.append(value)
    return texts


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def parse_json_body(body: Any) -> Any:
    """KServe hands over raw bytes when the content type is not JSON (e.g. curl's default form type)."""
    if isinstance(body, bytes | bytearray | str):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise InvalidInput(f"request body is not valid JSON: {error}") from None
    return body


def texts_from_v1(body: Any, max_instances: int) -> list[str]:
    """Texts of a ``{"sequence": ...}`` or ``{"instances": [...]}`` request."""
    body = parse_json_body(body)
    if not isinstance(body, dict):
        raise InvalidInput(
            f'request body must be a JSON object like {{"sequence": "text"}} or {{"instances": ["text"]}}, '
            f"got {_json_type(body)}"
        )
    present = [field for field in V1_FIELDS if field in body]
    if not present:
        raise InvalidInput(
            f'request body needs a "sequence" (text or list of texts) or "instances" (list of texts) field; '
            f"got fields: {sorted(body) or 'none'}"
        )
    if len(present) > 1:
        raise InvalidInput('send either "sequence" or "instances", not both')
    field = present[0]
    value = body[field]
    if field == "sequence" and isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        expected = "a text or a list of texts" if field == "sequence" else "a list of texts"
        raise InvalidInput(f'"{field}" must be {expected}, got {_json_type(value)}')
    _check_count(len(value), f'"{field}"', max_instances)
    return _texts(value, field)


def _flatten(data: Any) -> list[Any]:
    if hasattr(data, "tolist"):  # numpy arrays from binary / gRPC raw inputs
        data = data.tolist()
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def texts_from_v2(request: InferRequest, max_instances: int) -> list[str]:
    """Texts of an Open Inference Protocol request with one BYTES input tensor."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"expected exactly 1 input tensor of datatype BYTES, got {len(request.inputs)}")
    tensor = request.inputs[0]
    where = f'input "{tensor.name}"'
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"{where} must have datatype BYTES (the texts), got {tensor.datatype}")
    values = _flatten(tensor.data if tensor.data is not None else [])
    shape = list(tensor.shape or [])
    if any(not isinstance(dim, int) or dim < 0 for dim in shape):
        raise InvalidInput(f"{where} has an invalid shape {shape}")
    if math.prod(shape) != len(values):
        raise InvalidInput(f"{where} has shape {shape} but {len(values)} data elements")
    _check_count(len(values), where, max_instances)
    return _texts(values, where)
