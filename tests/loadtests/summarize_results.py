"""Summarize a load-test run: figures per scenario, a latency-over-time PNG, and threshold checks.

``python tests/loadtests/summarize_results.py OUTDIR --scenarios constant step spike`` reads what
``run_load_test.sh`` wrote for each scenario (vegeta's ``<scenario>_report.json`` and
``<scenario>.csv``), prints a table (also written to ``summary.md``), draws ``summary.png`` (latency of
every request over time, one panel per scenario) and exits 1 when a scenario's error rate or p99 latency
is above ``--max-error-rate`` / ``--max-p99-ms``.

Figures come from vegeta's own report; the CSV (``vegeta encode -to=csv``) gives the points to draw.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
from dataclasses import dataclass

SCENARIOS = ("constant", "step", "spike")
NANOS_PER_MS = 1e6


@dataclass(frozen=True)
class Figures:
    """One scenario's figures from ``vegeta report -type=json``."""

    scenario: str
    requests: int
    rate: float  # requests sent per second
    throughput: float  # successful answers per second
    success: float  # fraction of requests answered 2xx/3xx without error
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    status_codes: dict[str, int]

    @classmethod
    def from_report(cls, scenario: str, report: dict) -> Figures:
        latencies = report["latencies"]
        return cls(
            scenario=scenario,
            requests=report["requests"],
            rate=report["rate"],
            throughput=report["throughput"],
            success=report["success"],
            p50_ms=latencies["50th"] / NANOS_PER_MS,
            p95_ms=latencies["95th"] / NANOS_PER_MS,
            p99_ms=latencies["99th"] / NANOS_PER_MS,
            max_ms=latencies["max"] / NANOS_PER_MS,
            status_codes=report.get("status_codes") or {},
        )

    @property
    def error_rate(self) -> float:
        return 1.0 - self.success


@dataclass(frozen=True)
class Sample:
    """One request from vegeta's CSV encoding."""

    seconds: float  # since the scenario's first request
    latency_ms: float
    ok: bool
    attack: str


def read_samples(path: pathlib.Path) -> list[Sample]:
    """Columns of vegeta's CSV: timestamp (ns), code, latency (ns), bytes out, bytes in, error, body,
    attack name, sequence, method, URL, headers."""
    rows = list(csv.reader(path.open(newline="")))
    if not rows:
        return []
    start = min(int(row[0]) for row in rows)
    return [
        Sample(
            seconds=(int(row[0]) - start) / 1e9,
            latency_ms=int(row[2]) / NANOS_PER_MS,
            ok=200 <= int(row[1]) < 400 and not row[5],
            attack=row[7],
        )
        for row in rows
    ]


TABLE_HEADER = (
    "| scenario | requests | sent RPS | answered RPS | success | p50 ms | p95 ms | p99 ms | max ms "
    "| codes |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def table(figures: list[Figures]) -> str:
    rows = [
        f"| {f.scenario} | {f.requests} | {f.rate:.1f} | {f.throughput:.1f} | {f.success:.2%} | "
        f"{f.p50_ms:.1f} | {f.p95_ms:.1f} | {f.p99_ms:.1f} | {f.max_ms:.1f} | "
        + " ".join(f"{code}:{count}" for code, count in sorted(f.status_codes.items()))
        + " |"
        for f in figures
    ]
    return "\n".join([TABLE_HEADER, *rows])


def threshold_breaches(figures: list[Figures], max_error_rate: float, max_p99_ms: float) -> list[str]:
    breaches = []
    for f in figures:
        if f.error_rate > max_error_rate:
            breaches.append(f"{f.scenario}: error rate {f.error_rate:.2%} > {max_error_rate:.2%}")
        if f.p99_ms > max_p99_ms:
            breaches.append(f"{f.scenario}: p99 {f.p99_ms:.0f} ms > {max_p99_ms:.0f} ms")
    return breaches


def plot(samples: dict[str, list[Sample]], figures: dict[str, Figures], path: pathlib.Path) -> None:
    """Latency of every request over time, one panel per scenario; failed requests as red crosses."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, axes = pyplot.subplots(len(samples), 1, figsize=(10, 3.2 * len(samples)), squeeze=False)
    for ax, (scenario, points) in zip(axes[:, 0], samples.items(), strict=True):
        for attack in dict.fromkeys(point.attack for point in points):  # in order of first appearance
            ok = [p for p in points if p.attack == attack and p.ok]
            ax.plot([p.seconds for p in ok], [p.latency_ms for p in ok], ".", markersize=3, label=attack)
        failed = [p for p in points if not p.ok]
        if failed:
            ax.plot([p.seconds for p in failed], [p.latency_ms for p in failed], "rx", label="failed")
        f = figures[scenario]
        ax.set_title(
            f"{scenario}: {f.requests} requests, {f.throughput:.1f} answered/s, success {f.success:.1%}, "
            f"p50 {f.p50_ms:.0f} / p95 {f.p95_ms:.0f} / p99 {f.p99_ms:.0f} ms",
            fontsize=9,
        )
        ax.axhline(f.p99_ms, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("seconds since the scenario started")
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path, help="the directory run_load_test.sh wrote into")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--max-error-rate", type=float, default=0.01, help="highest error fraction, 0..1")
    parser.add_argument("--max-p99-ms", type=float, default=5000, help="highest p99 latency in milliseconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures, samples = {}, {}
    for scenario in args.scenarios:
        report = args.out / f"{scenario}_report.json"
        if not report.is_file():
            print(f"summarize_results: no {report}: did the {scenario} scenario run?", file=sys.stderr)
            return 2
        figures[scenario] = Figures.from_report(scenario, json.loads(report.read_text()))
        samples[scenario] = read_samples(args.out / f"{scenario}.csv")
    summary = table(list(figures.values()))
    (args.out / "summary.md").write_text(summary + "\n")
    plot(samples, figures, args.out / "summary.png")
    print(summary)
    print(f"plots: {args.out}/*_plot.html, {args.out}/summary.png")
    breaches = threshold_breaches(list(figures.values()), args.max_error_rate, args.max_p99_ms)
    for breach in breaches:
        print(f"THRESHOLD EXCEEDED {breach}", file=sys.stderr)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
