"""The seed's integration suite run as a user runs it: `python -m unittest tests/test_integration_hf.py`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import ROOT
from tests.integration.conftest import SEED_MODEL_NAME
from tests.model.server_process import free_port

SUITE = "tests/test_integration_hf.py"
SUITE_SETTINGS = (
    "KSA_TARGET_URL",
    "KSA_HOST_HEADER",
    "KSA_MODEL_NAME",
    "KSA_LABELS",
    "KSA_TIMEOUT",
    "KSA_READY_TIMEOUT",
)


def run_suite(settings: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m unittest`` on the suite with exactly these settings (none inherited from the caller)."""
    env = {name: value for name, value in os.environ.items() if name not in SUITE_SETTINGS}
    return subprocess.run(
        [sys.executable, "-m", "unittest", "-v", SUITE],
        cwd=ROOT,
        env={**env, **settings},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def number_of_tests_run(result: subprocess.CompletedProcess) -> int:
    match = re.search(r"^Ran (\d+) tests? in", result.stderr, re.MULTILINE)
    assert match, result.stderr[-3000:]
    return int(match[1])


def test_suite_passes_against_the_local_model_server(seed_model_server, seed_model_labels):
    result = run_suite(
        {
            "KSA_TARGET_URL": seed_model_server.url,
            "KSA_MODEL_NAME": SEED_MODEL_NAME,
            "KSA_LABELS": ",".join(seed_model_labels),
        }
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert number_of_tests_run(result) >= 15
    assert "skipped" not in result.stderr.splitlines()[-1], result.stderr[-3000:]


def test_suite_sends_the_host_header_an_ingress_routes_by(seed_model_server):
    """The model server ignores Host, so this only shows every request goes out with it and still passes."""
    result = run_suite(
        {
            "KSA_TARGET_URL": seed_model_server.url + "/",
            "KSA_HOST_HEADER": "huggingface-distilbert.kserve-test.127.0.0.1.sslip.io",
            "KSA_MODEL_NAME": SEED_MODEL_NAME,
        }
    )
    assert result.returncode == 0, result.stderr[-5000:]


def test_suite_stops_at_once_with_one_message_when_nothing_answers():
    dead_url = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    result = run_suite({"KSA_TARGET_URL": dead_url, "KSA_MODEL_NAME": SEED_MODEL_NAME}, timeout=60)
    assert result.returncode != 0
    assert number_of_tests_run(result) == 0, "no test should run when the target is unreachable"
    assert f"cannot connect to {dead_url}" in result.stderr, result.stderr[-3000:]
    assert "KSA_TARGET_URL" in result.stderr


def test_suite_names_the_model_when_it_is_not_served(seed_model_server):
    result = run_suite(
        {"KSA_TARGET_URL": seed_model_server.url, "KSA_MODEL_NAME": "not-served", "KSA_READY_TIMEOUT": "1"},
        timeout=60,
    )
    assert result.returncode != 0
    assert number_of_tests_run(result) == 0
    assert "model 'not-served'" in result.stderr and "not ready after 1s" in result.stderr, result.stderr[
        -3000:
    ]
