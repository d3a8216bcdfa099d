"""Render the KServe models dashboard's panels to a PNG from a real run.

    python -m tests.monitoring.render_dashboard docs/monitoring.png [--seconds 90]

Starts the local metrics stack (tests/monitoring/stack.py: two model server processes scraped by a real
Prometheus with the monitoring role's scrape jobs), sends load in steps of rising concurrency, then draws
every panel of roles/monitoring/files/dashboards/kserve-models.json from the Prometheus range API, the
queries exactly as the dashboard has them.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from tests.monitoring import dashboard
from tests.monitoring.stack import ISVC, MODEL, Stack, metrics_stack, send_load

RATE_WINDOW = "15s"
UNIT_SCALE = {"s": (1000, "ms"), "bytes": (1 / 2**20, "MiB"), "percentunit": (100, "%")}


def short(label: str) -> str:
    """Legends without the repeated InferenceService name: `rev 00001` for its revisions."""
    return label.replace(f"{ISVC}-predictor-", "rev ").replace(f" {MODEL}", "").replace(ISVC, "isvc")


def run_load(stack: Stack, seconds: float) -> tuple[float, float, dict[int, int]]:
    start = time.time()
    answers: dict[int, int] = {}
    for concurrency in (1, 2, 4, 8):
        for code, count in send_load(stack, seconds / 4, concurrency=concurrency).items():
            answers[code] = answers.get(code, 0) + count
    stack.wait_scraped_since(time.time(), scrapes=3)
    return start, time.time(), answers


def draw(stack: Stack, start: float, end: float, out: pathlib.Path, subtitle: str) -> None:
    queries = dashboard.panel_queries(RATE_WINDOW)
    panels: dict[str, list[dashboard.PanelQuery]] = {}
    for query in queries:
        panels.setdefault(query.panel, []).append(query)
    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.3 * rows), squeeze=False)
    for ax, (title, panel_queries) in zip(axes.flat, panels.items(), strict=False):
        unit = panel_queries[0].unit
        scale, unit_label = UNIT_SCALE.get(unit, (1, {"reqps": "req/s"}.get(unit, "")))
        for query in panel_queries:
            for series in stack.query_range(query.expr, start, end, step=1):
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) * scale for _, v in series["values"]]
                label = dashboard.legend(query.legend, series["metric"])
                ax.plot(times, values, linewidth=1.2, label=short(label))
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel(unit_label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0f}s"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(f"KServe models dashboard — {subtitle}", fontsize=12)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("out", type=pathlib.Path, help="PNG file to write")
    parser.add_argument(
        "--seconds", type=float, default=80, help="load duration (4 steps: 1, 2, 4, 8 clients)"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="kserve-ansible-dashboard-") as workdir,
        metrics_stack(pathlib.Path(workdir)) as stack,
    ):
        start, end, answers = run_load(stack, args.seconds)
        summary = ", ".join(f"{count} x HTTP {code}" for code, count in sorted(answers.items()))
        draw(stack, start, end, args.out, f"2 revisions, tiny model, 1→8 clients, answers: {summary}")
    print(f"wrote {args.out} ({summary})")


if __name__ == "__main__":
    main()
