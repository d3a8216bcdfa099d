"""What an inference probe sends and how its answers are judged. Pure functions, no I/O.

- `build_request(...)`: the path and JSON body for KServe v1, v2 (Open Inference Protocol) or a raw body,
  validated before anything is sent (`ProbeInputError` with a clear message otherwise).
- `predictions_of(protocol, response)`: the per-input rows an answer contains, so `expect` can name them.
- `subset_differences(expected, actual)`: readable differences between an expected JSON subset and
  an answer (empty list = match).
- `percentile` / `latency_summary` / `slo_violations`: latency figures and SLO checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

PROTOCOLS = ("v1", "v2", "raw")
V2_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
SLO_PERCENTILES = {"p50_ms": 50, "p95_ms": 95, "p99_ms": 99}
PAYLOAD_OPTION = {"v1": "instances", "v2": "inputs", "raw": "body"}


class ProbeInputError(ValueError):
    """The probe's own inputs are wrong: nothing was sent."""


@dataclass
class Outcome:
    """One request's final answer (status None: no HTTP answer, see error)."""

    status: int | None
    latency_ms: float
    body: object = None
    attempts: int = 1
    error: str = ""


@dataclass
class ProbeRequest:
    path: str
    body: object
    rows: int | None  # how many per-input answers to expect (None: unknown for a raw body)


def default_path(protocol: str, model_name: str) -> str:
    if protocol == "v2":
        return f"/v2/models/{model_name}/infer"
    return f"/v1/models/{model_name}:predict"


def build_request(
    protocol: str, model_name: str, instances=None, inputs=None, body=None, path: str | None = None
) -> ProbeRequest:
    if protocol not in PROTOCOLS:
        raise ProbeInputError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if not model_name:
        raise ProbeInputError("model_name is required (or name, whose value it defaults to)")
    given = {"instances": instances, "inputs": inputs, "body": body}
    wanted = PAYLOAD_OPTION[protocol]
    for option, value in given.items():
        if value is not None and option != wanted:
            raise ProbeInputError(
                f"{option} is not used with protocol {protocol}: give {wanted} "
                f"({', '.join(f'{PAYLOAD_OPTION[p]} for {p}' for p in PROTOCOLS)})"
            )
    if given[wanted] is None:
        raise ProbeInputError(f"protocol {protocol} needs {wanted}")
    if path and protocol != "raw":
        raise ProbeInputError(f"path is only for protocol raw; {protocol} uses {default_path(protocol, 'M')}")
    request_path = path or default_path(protocol, model_name)
    if not request_path.startswith("/"):
        raise ProbeInputError(f"path must start with '/': {request_path!r}")
    if protocol == "v1":
        if not isinstance(instances, list) or not instances:
            raise ProbeInputError("instances must be a non-empty list (one entry per input)")
        return ProbeRequest(request_path, {"instances": instances}, len(instances))
    if protocol == "v2":
        _validate_v2_inputs(inputs)
        return ProbeRequest(request_path, {"inputs": inputs}, _v2_rows(inputs))
    if not isinstance(body, (dict, list)):
        raise ProbeInputError("body must be a JSON object or list")
    rows = (
        len(body["instances"]) if isinstance(body, dict) and isinstance(body.get("instances"), list) else None
    )
    return ProbeRequest(request_path, body, rows)


def _validate_v2_inputs(inputs) -> None:
    if not isinstance(inputs, list) or not inputs:
        raise ProbeInputError("inputs must be a non-empty list of tensors {name, shape, datatype, data}")
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise ProbeInputError(f"{where} must be a mapping with name, shape, datatype, data")
        missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
        if missing:
            raise ProbeInputError(f"{where} lacks {', '.join(missing)}")
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ProbeInputError(f"{where}.shape must be a list of non-negative integers, got {shape!r}")
        if tensor["datatype"] not in V2_DATATYPES:
            raise ProbeInputError(
                f"{where}.datatype {tensor['datatype']!r} is not a v2 datatype ({', '.join(V2_DATATYPES)})"
            )
        count = len(_flatten(tensor["data"]))
        if count != math.prod(shape):
            raise ProbeInputError(
                f"{where} has {count} data elements but shape {shape} needs {math.prod(shape)}"
            )


def _v2_rows(inputs: list[dict]) -> int | None:
    shape = inputs[0]["shape"]
    return shape[0] if shape else None


def _flatten(data) -> list:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def validate_expectations(expect, rows: int | None) -> None:
    """`expect` holds one expectation per input; check the count now rather than after sending."""
    if expect is None:
        return
    if not isinstance(expect, list):
        raise ProbeInputError("expect must be a list: one expectation per input, e.g. [{label: POSITIVE}]")
    if rows is not None and len(expect) != rows:
        raise ProbeInputError(f"expect has {len(expect)} entries but the request has {rows} inputs")


# --------------------------------------------------------------------------- answers


def predictions_of(protocol: str, response) -> list:
    """Per-input answers: v1 `predictions`; v2 one row per input built from the output tensors
    ({output name: value}); raw: `predictions` if present, a list as is, else the whole answer."""
    if isinstance(response, dict) and protocol != "v2" and isinstance(response.get("predictions"), list):
        return response["predictions"]
    if isinstance(response, dict) and isinstance(response.get("outputs"), list):
        return _v2_output_rows(response["outputs"])
    if protocol == "raw":
        return response if isinstance(response, list) else [response]
    return []


def _v2_output_rows(outputs: list[dict]) -> list[dict]:
    rows: list[dict] = []
    for tensor in outputs:
        data = _flatten(tensor.get("data", []))
        shape = tensor.get("shape") or [len(data)]
        count = shape[0] if shape[0] else 0
        width = len(data) // count if count else 0
        while len(rows) < count:
            rows.append({})
        for i in range(count):
            chunk = data[i * width : (i + 1) * width]
            rows[i][tensor.get("name", "output")] = chunk[0] if width == 1 else chunk
    return rows


def subset_differences(expected, actual, path: str = "") -> list[str]:
    """Where `actual` departs from `expected`: mappings match on the keys given (extra keys are fine),
    lists element by element (same length), scalars by value (floats to 1e-9 relative)."""
    where = path or "answer"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {_show(actual)}"]
        diffs = []
        for key, value in expected.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in actual:
                diffs.append(f"{child}: missing (expected {_show(value)})")
            else:
                diffs += subset_differences(value, actual[key], child)
        return diffs
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} items, got {len(actual)}: {_show(actual)}"]
        diffs = []
        for i, (exp, act) in enumerate(zip(expected, actual, strict=True)):
            diffs += subset_differences(exp, act, f"{path}[{i}]")
        return diffs
    if _same_scalar(expected, actual):
        return []
    return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]


def _same_scalar(expected, actual) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    return expected == actual


def _show(value, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def answer_differences(protocol: str, response, expect=None, expect_response=None) -> list[str]:
    """All differences of one answer from `expect` (per input) and `expect_response` (whole answer)."""
    diffs = []
    if expect is not None:
        predictions = predictions_of(protocol, response)
        if len(predictions) != len(expect):
            diffs.append(f"expected {len(expect)} predictions, got {len(predictions)}: {_show(predictions)}")
        else:
            for i, (exp, got) in enumerate(zip(expect, predictions, strict=True)):
                found = subset_differences(exp, got, f"predictions[{i}]")
                if found:
                    diffs += found
                    diffs.append(f"    prediction {i} was: {_show(got)}")
    if expect_response is not None:
        diffs += subset_differences(expect_response, response)
    return diffs


# --------------------------------------------------------------------------- latency


def percentile(values: list[float], q: float) -> float:
    """q-th percentile with linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {}
    summary = {
        "min": min(latencies_ms),
        "max": max(latencies_ms),
        "mean": sum(latencies_ms) / len(latencies_ms),
    }
    summary.update({f"p{q}": percentile(latencies_ms, q) for q in (50, 90, 95, 99)})
    return {key: round(value, 2) for key, value in summary.items()}


def slo_violations(slo: dict | None, summary: dict) -> list[str]:
    """Each SLO bound (p50_ms, p95_ms, p99_ms, max_ms) the measured latencies exceed."""
    violations = []
    for option, bound in (slo or {}).items():
        if bound is None:
            continue
        key = "max" if option == "max_ms" else f"p{SLO_PERCENTILES[option]}"
        measured = summary.get(key)
        if measured is not None and measured > bound:
            violations.append(f"latency {key} {measured:.1f} ms exceeds the SLO {option}={bound:g} ms")
    return violations


# --------------------------------------------------------------------------- verdict

LATENCIES_RETURNED = 1000


def judge(
    outcomes: list[Outcome],
    wall_seconds: float,
    protocol: str,
    status_code: int = 200,
    expect=None,
    expect_response=None,
    slo: dict | None = None,
) -> tuple[dict, list[str]]:
    """Measured figures of a probe run, and every failure found (empty list: the probe passed)."""
    good = [o for o in outcomes if o.status == status_code]
    latencies = [round(o.latency_ms, 2) for o in good]
    summary = latency_summary(latencies)
    codes: dict[str, int] = {}
    for outcome in outcomes:
        label = str(outcome.status) if outcome.status is not None else "error"
        codes[label] = codes.get(label, 0) + 1
    sample = (good or outcomes)[0] if outcomes else None
    figures = {
        "requests": len(outcomes),
        "succeeded": len(good),
        "status_codes": codes,
        "retries": sum(o.attempts - 1 for o in outcomes),
        "latency_ms": summary,
        "latencies_ms": latencies[:LATENCIES_RETURNED],
        "duration": round(wall_seconds, 3),
        "throughput_rps": round(len(good) / wall_seconds, 2) if wall_seconds > 0 else None,
        "sample_response": sample.body if sample else None,
        "predictions": predictions_of(protocol, sample.body) if sample and sample in good else [],
    }
    failures = []
    bad = [o for o in outcomes if o.status != status_code]
    if bad:
        first = bad[0]
        got = first.error or f"HTTP {first.status}: {_show(first.body)}"
        failures.append(f"{len(bad)} of {len(outcomes)} requests did not return {status_code}; first: {got}")
    mismatched = [
        (i, answer_differences(protocol, o.body, expect, expect_response)) for i, o in enumerate(good)
    ]
    mismatched = [(i, diffs) for i, diffs in mismatched if diffs]
    if mismatched:
        index, diffs = mismatched[0]
        failures.append(
            f"{len(mismatched)} of {len(good)} answers do not match the expectations; answer {index + 1}:\n  "
            + "\n  ".join(diffs)
        )
    failures += slo_violations(slo, summary)
    return figures, failures
