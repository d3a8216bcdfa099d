"""The Open Inference Protocol's binary tensor data extension, checked before KServe decodes it.

A binary request (what ``tritonclient.http`` sends by default) is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the tensors' raw bytes, in input order; an input whose
data is binary says how many bytes it has in ``parameters.binary_data_size``. A ``BYTES`` tensor's raw data
is its elements one after the other, each a 4-byte little-endian length and that many bytes.

KServe 0.14 decodes this itself, but answers a malformed request (a missing field, sizes that do not add
up, a cut element) with a 500 and a Python exception. ``binary_request_problem`` finds what is wrong first,
so the client gets a 400 that says it.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import orjson

LENGTH_PREFIX = struct.Struct("<I")


def bytes_elements_count(raw: bytes) -> int | None:
    """How many length-prefixed elements ``raw`` holds exactly, or None when they do not fill it."""
    count, offset = 0, 0
    while offset < len(raw):
        if offset + LENGTH_PREFIX.size > len(raw):
            return None
        (length,) = LENGTH_PREFIX.unpack_from(raw, offset)
        offset += LENGTH_PREFIX.size + length
        count += 1
    return count if offset == len(raw) else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _header(body: bytes, header_length: bytes) -> tuple[dict | None, str | None]:
    text = header_length.decode("latin-1").strip()
    if not text.isdigit():
        return None, f"Inference-Header-Content-Length must be a number of bytes, got {text!r}"
    json_length = int(text)
    if json_length > len(body):
        return None, (
            f"Inference-Header-Content-Length is {json_length} but the body has only {len(body)} bytes"
        )
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as error:
        return None, f"the JSON header (the first {json_length} bytes) is not valid JSON: {error}"
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        return None, 'the JSON header must be an object with an "inputs" list'
    return header, None


def _input_problem(tensor: Any, index: int) -> str | None:
    if not isinstance(tensor, dict):
        return f"inputs[{index}] must be an object"
    if not isinstance(tensor.get("name"), str) or not isinstance(tensor.get("datatype"), str):
        return f'inputs[{index}] needs a "name" and a "datatype"'
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        return f'input "{tensor["name"]}" has an invalid shape {shape!r}'
    parameters = tensor.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        return f'input "{tensor["name"]}": parameters must be an object'
    return None


def binary_request_problem(body: bytes, header_length: bytes) -> str | None:
    """What is wrong with a binary tensor request (for a 400), or None when KServe can decode it."""
    header, problem = _header(body, header_length)
    if problem:
        return problem
    offset = int(header_length.decode("latin-1").strip())
    for index, tensor in enumerate(header["inputs"]):
        problem = _input_problem(tensor, index)
        if problem:
            return problem
        name = tensor["name"]
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if tensor.get("data") is None:
                return f'input "{name}" has neither "data" nor parameters.binary_data_size'
            continue
        if not _is_count(size):
            return f'input "{name}": binary_data_size must be a number of bytes, got {size!r}'
        if tensor["datatype"] != "BYTES":
            return f'input "{name}" must have datatype BYTES (the texts), got {tensor["datatype"]}'
        raw = body[offset : offset + size]
        if len(raw) < size:
            return f'input "{name}" declares {size} bytes of binary data but the body ends before them'
        count = bytes_elements_count(raw)
        if count is None:
            return (
                f'input "{name}": its {size} bytes are not whole BYTES elements '
                "(each a 4-byte little-endian length, then that many bytes)"
            )
        if count != math.prod(tensor["shape"]):
            return f'input "{name}" has shape {tensor["shape"]} but {count} data elements'
        offset += size
    if offset != len(body):
        return f"the body has {len(body) - offset} bytes after the last input's binary data"
    outputs = header.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        return '"outputs" must be a list of objects with a "name"'
    return None
