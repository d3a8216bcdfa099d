"""Knative-style status conditions (knative.dev/pkg apis.Condition) as plain dicts."""

from __future__ import annotations

import datetime

TRUE = "True"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: str, reason: str = "", message: str = "", severity: str = "") -> dict:
    cond = {"type": type_, "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    if severity:
        cond["severity"] = severity
    return cond


def with_transition_times(new: list[dict], old: list[dict] | None) -> list[dict]:
    """Keep a condition's lastTransitionTime while its status does not change."""
    before = {c["type"]: c for c in old or []}
    stamped = []
    for cond in sorted(new, key=lambda c: c["type"]):
        prev = before.get(cond["type"])
        time = prev.get("lastTransitionTime") if prev and prev.get("status") == cond["status"] else None
        stamped.append({**cond, "lastTransitionTime": time or now_iso()})
    return stamped


def same_conditions(a: list[dict] | None, b: list[dict] | None) -> bool:
    def strip(conds):
        return sorted(
            (c["type"], c["status"], c.get("reason", ""), c.get("message", ""), c.get("severity", ""))
            for c in conds or []
        )

    return strip(a) == strip(b)
