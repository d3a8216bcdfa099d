"""The KServe models dashboard (roles/monitoring/files/dashboards/kserve-models.json) as PromQL.

Grafana fills in the dashboard's variables before it sends a query; this does the same with each
variable's "All" value (so every InferenceService), and `$__rate_interval` with a fixed window.
"""

from __future__ import annotations

import dataclasses
import json
import re

from tests.monitoring.role_render import ROLE

DASHBOARD = ROLE / "files" / "dashboards" / "kserve-models.json"


@dataclasses.dataclass(frozen=True)
class PanelQuery:
    panel: str
    unit: str
    legend: str
    expr: str


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries(rate_interval: str = "30s") -> list[PanelQuery]:
    dashboard = load()
    values = {"__rate_interval": rate_interval}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            values[variable["name"]] = variable["allValue"]

    def fill(expr: str) -> str:
        return re.sub(r"\$(\w+)", lambda match: values[match[1]], expr)

    return [
        PanelQuery(
            panel["title"],
            panel["fieldConfig"]["defaults"]["unit"],
            target["legendFormat"],
            fill(target["expr"]),
        )
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: `{{label}}` replaced by the series' label value."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match[1], ""), template).strip()
