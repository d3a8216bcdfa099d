"""Filters of the models role over many InferenceServices at once: which entries are in which namespace,
which ones a dry run says get a new spec (canaries), and one line saying what an apply changed.

Input shapes: entries of `models_inference_services`; the `objects` that k8s_manifest_set returns (kind,
name, namespace, action, and generation / previous_generation when known).
"""

from __future__ import annotations

import json


def models_by_namespace(entries: list, default_namespace: str) -> dict:
    """{namespace: [entry names]} in the entries' order, for one wait (one watch) per namespace."""
    found: dict[str, list[str]] = {}
    for entry in entries or []:
        found.setdefault(entry.get("namespace") or default_namespace, []).append(entry["name"])
    return found


def models_spec_changes(objects: list) -> list:
    """NAMESPACE/NAME of the InferenceServices whose spec changes: updated, and metadata.generation bumped
    (a label or annotation alone does not bump it: no new revision, no canary)."""
    return [
        f"{obj.get('namespace', '')}/{obj['name']}"
        for obj in objects or []
        if obj.get("kind") == "InferenceService"
        and obj.get("action") == "updated"
        and obj.get("generation", 0) > obj.get("previous_generation", obj.get("generation", 0))
    ]


def models_select(entries: list, keys: list, default_namespace: str) -> list:
    """The entries whose NAMESPACE/NAME is in `keys` (an entry without namespace is in default_namespace)."""
    wanted = set(keys or [])
    return [e for e in entries or [] if f"{e.get('namespace') or default_namespace}/{e['name']}" in wanted]


def models_changes(objects: list, check_mode: bool = False) -> str:
    """One line: the InferenceServices created and updated (by name), how many are unchanged."""
    by_action: dict[str, list[str]] = {}
    for obj in objects or []:
        by_action.setdefault(obj.get("action", "?"), []).append(obj["name"])
    verbs = ("would be created", "would be updated") if check_mode else ("created", "updated")
    parts = [
        f"{verb} ({len(by_action[action])}): {', '.join(by_action[action])}"
        for verb, action in zip(verbs, ("created", "updated"), strict=True)
        if by_action.get(action)
    ]
    if by_action.get("conflict"):
        parts.append(
            f"left as is, fields owned by another manager ({len(by_action['conflict'])}): "
            + ", ".join(by_action["conflict"])
        )
    unchanged = len(by_action.get("unchanged", []))
    parts.append(f"{unchanged} unchanged" if parts else f"all {unchanged} unchanged")
    return "InferenceServices " + "; ".join(parts)


SMOKE_KEYS = ("protocol", "instances", "inputs", "body", "path", "expect", "expect_response", "slo")


def models_smoke_probes(entries: list, default_namespace: str) -> list:
    """Each entry's smoke_test as an entry of inference_probe's `probes` (one request unless it asks more)."""
    probes = []
    for entry in entries or []:
        smoke = entry.get("smoke_test") or {}
        probe = {
            "name": entry["name"],
            "namespace": entry.get("namespace") or default_namespace,
            "model_name": entry.get("model_name") or entry["name"],
            "requests": max(int(smoke.get("requests") or 1), 1),
        }
        probe.update({key: smoke[key] for key in SMOKE_KEYS if smoke.get(key) is not None})
        probes.append(probe)
    return probes


def models_smoke_problems(results: list, entries: list) -> list:
    """What is wrong with the answers of each smoke test (as smoke_test.yml checks one): no prediction, not
    one per instance, a label not among the entry's smoke_test.labels."""
    problems = []
    for result, entry in zip(results or [], entries or [], strict=False):
        smoke = entry.get("smoke_test") or {}
        predictions = result.get("predictions") or []
        labels = smoke.get("labels")
        wrong = (
            not predictions
            or ("instances" in smoke and len(predictions) != len(smoke["instances"]))
            or (
                labels
                and any((p or {}).get("label", "") not in labels for p in predictions if isinstance(p, dict))
            )
        )
        if wrong:
            expected = len(smoke.get("instances") or []) or "one or more"
            problems.append(
                f"{entry['name']} answered {json.dumps(result.get('sample_response'))}: expected {expected} "
                f"prediction(s), labelled one of {', '.join(labels or ['any label'])}"
            )
    return problems


def models_probe_figures(results: list) -> dict:
    """{name: the figures the summary shows} of inference_probe's results."""
    keep = ("url", "host_header", "succeeded", "requests", "latency_ms", "sample_response")
    return {result["name"]: {key: result[key] for key in keep if key in result} for result in results or []}


class FilterModule:
    def filters(self):
        return {
            "models_by_namespace": models_by_namespace,
            "models_spec_changes": models_spec_changes,
            "models_select": models_select,
            "models_changes": models_changes,
            "models_smoke_probes": models_smoke_probes,
            "models_smoke_problems": models_smoke_problems,
            "models_probe_figures": models_probe_figures,
        }
