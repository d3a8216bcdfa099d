"""The seed's load tests (tests/loadtests/run_load_test.sh, real vegeta), scaled down to seconds."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from devcluster.cluster import BIN_DIR
from tests.helpers import ROOT
from tests.integration.conftest import SEED_MODEL_NAME
from tests.loadtests.summarize_results import Figures, threshold_breaches
from tests.model.server_process import free_port

LOADTESTS = ROOT / "tests" / "loadtests"
SCRIPT = LOADTESTS / "run_load_test.sh"
VEGETA = BIN_DIR / "vegeta"
TARGET_SETTINGS = ("KSA_TARGET_URL", "KSA_HOST_HEADER", "KSA_MODEL_NAME", "KSA_LOADTEST_OUT")
PLOTS = {  # the seed's plot files, with the titles the short run gives them
    "constant_load_plot.html": "Constant load: 10 RPS for 2s",
    "step_load_plot.html": "Step load: 1 -&gt; 5 -&gt; 10 RPS, 1s each",
    "spike_test_plot.html": "Spike: 30 RPS for 1s",
}
# All three scenarios, a few seconds in all: (rate, seconds) per attack.
SHORT_RUN = {"constant": [(10, 2)], "step": [(1, 1), (5, 1), (10, 1)], "spike": [(30, 1)]}
SHORT_RUN_OPTIONS = [
    "--constant-rate", "10", "--constant-duration", "2s",
    "--step-rates", "1 5 10", "--step-duration", "1s",
    "--spike-rate", "30", "--spike-duration", "1s",
    "--max-error-rate", "0",
    "--max-p99", "1h",  # thresholds on latency belong to benchmarks, not tests
]  # fmt: skip


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The script as a user runs it from tests/loadtests, with no target settings from the environment."""
    env = {name: value for name, value in os.environ.items() if name not in TARGET_SETTINGS}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=LOADTESTS,
        env={**env, "VEGETA": str(VEGETA), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def vegeta():
    if not VEGETA.is_file():
        pytest.skip(f"vegeta not built at {VEGETA}: run `make tools`")
    return VEGETA


@pytest.fixture(scope="module")
def short_load_run(vegeta, seed_model_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("loadtest")
    result = run_script(
        "--url", seed_model_server.url, "--model", SEED_MODEL_NAME, "--out", str(out), *SHORT_RUN_OPTIONS
    )
    return result, out


def test_short_run_of_all_scenarios_answers_every_request(short_load_run):
    result, out = short_load_run
    assert result.returncode == 0, result.stdout + result.stderr
    for scenario, attacks in SHORT_RUN.items():
        report = json.loads((out / f"{scenario}_report.json").read_text())
        assert report["requests"] == sum(rate * seconds for rate, seconds in attacks), scenario
        assert report["success"] == 1.0, (scenario, report["status_codes"], report["errors"])
        assert report["status_codes"] == {"200": report["requests"]}
        assert "Success" in (out / f"{scenario}_report.txt").read_text()
    assert "| spike |" in result.stdout  # the summary table


def test_short_run_writes_the_seeds_plots_and_a_summary_png(short_load_run):
    _, out = short_load_run
    for plot, title in PLOTS.items():
        html = (out / plot).read_text()
        assert f"<title>{title}</title>" in html, plot
        assert "uplot" in html, f"{plot}: no chart"  # vegeta plot draws with uPlot
    png = (out / "summary.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert (out / "summary.md").read_text().count("\n") == 2 + len(SHORT_RUN)


def test_p99_above_the_threshold_fails_the_run(short_load_run):
    _, out = short_load_run
    summarize = [str(LOADTESTS / "summarize_results.py"), str(out), "--max-p99-ms", "0"]
    result = subprocess.run(
        [sys.executable, *summarize], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 1
    assert "THRESHOLD EXCEEDED constant: p99" in result.stderr


def test_error_rate_above_the_threshold_is_a_breach():
    figures = Figures("spike", 100, 50.0, 45.0, 0.9, 10.0, 20.0, 30.0, 40.0, {"200": 90, "503": 10})
    assert threshold_breaches([figures], max_error_rate=0.01, max_p99_ms=1000) == [
        "spike: error rate 10.00% > 1.00%"
    ]
    assert threshold_breaches([figures], max_error_rate=0.1, max_p99_ms=1000) == []


def test_a_remote_target_is_refused_without_allow_remote():
    result = run_script("--url", "http://192.0.2.10:8080")
    assert result.returncode == 2
    assert "refusing to load-test '192.0.2.10': not a loopback address" in result.stderr
    assert "--allow-remote" in result.stderr


def test_nothing_answering_stops_the_run_before_any_attack(vegeta, tmp_path):
    dead_url = f"http://127.0.0.1:{free_port()}"
    result = run_script("--url", dead_url, "--out", str(tmp_path))
    assert result.returncode == 2
    assert f"nothing answers at {dead_url}" in result.stderr
    assert not list(tmp_path.glob("*.bin")), "no attack should have started"


def test_committed_target_is_the_payload_sent_to_the_default_target():
    printed = run_script("--print-target")
    assert printed.returncode == 0, printed.stderr
    committed = (LOADTESTS / "target.json").read_text()
    assert committed == printed.stdout, (
        "target.json is stale: regenerate with ./run_load_test.sh --print-target"
    )
    target = json.loads(committed)
    assert target["method"] == "POST"
    assert target["url"] == f"http://127.0.0.1:8080/v1/models/{SEED_MODEL_NAME}:predict"
    assert base64.b64decode(target["body"]) == (LOADTESTS / "payload.json").read_bytes()


def test_host_header_goes_into_the_target():
    printed = run_script(
        "--url", "http://127.0.0.1:31080", "--host", "distilbert.kserve-test.example.com", "--print-target"
    )
    target = json.loads(printed.stdout)
    assert target["header"]["Host"] == ["distilbert.kserve-test.example.com"]
    assert target["url"] == f"http://127.0.0.1:31080/v1/models/{SEED_MODEL_NAME}:predict"
