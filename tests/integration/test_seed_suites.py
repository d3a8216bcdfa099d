"""The seed's integration suite run as a user runs it: `python -m unittest tests/test_integration_hf.py`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unittest

import pytest

from devcluster import istio_standin as istio
from devcluster.ingress import Ingress
from tests.helpers import ROOT
from tests.integration.conftest import SEED_MODEL_NAME
from tests.model.server_process import free_port

SUITE = "tests/test_integration_hf.py"
SUITE_SIZE = 19  # the tests the suite declares: all of them must run and pass, none skipped
INGRESS_HOST = "huggingface-distilbert.kserve-test.127.0.0.1.sslip.io"
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


def suite_test_ids() -> set[str]:
    """Every test the suite declares, as unittest's loader finds it (pytest never collects the file)."""
    found, pending = set(), [unittest.defaultTestLoader.loadTestsFromName(SUITE[:-3].replace("/", "."))]
    while pending:
        for item in pending.pop():
            if isinstance(item, unittest.TestSuite):
                pending.append(item)
            else:
                found.add(item.id())
    return found


def assert_every_test_passed(result: subprocess.CompletedProcess) -> None:
    """Each declared test ran and passed ("... ok" in unittest's -v report), none skipped or failed."""
    assert result.returncode == 0, result.stderr[-5000:]
    passed = set(re.findall(r"^\w+ \(([\w.]+)\)(?:\n.*?)? \.\.\. ok$", result.stderr, re.MULTILINE))
    assert passed == suite_test_ids(), result.stderr[-5000:]
    assert number_of_tests_run(result) == len(passed) == SUITE_SIZE, result.stderr[-3000:]
    assert result.stderr.rstrip().splitlines()[-1] == "OK", result.stderr[-3000:]  # not "OK (skipped=N)"


@pytest.fixture
def ingress(seed_model_server):
    """The local cluster's ingress (devcluster/ingress.py, playing Istio's gateway) in front of the model
    server, routing one host name as KServe's VirtualService does: any other Host gets Istio's 404."""
    service = {
        "metadata": {"name": "distilbert-predictor", "namespace": "kserve-test"},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    endpoints = {
        "metadata": {
            "name": "distilbert-predictor-abcde",
            "namespace": "kserve-test",
            "labels": {"kubernetes.io/service-name": "distilbert-predictor"},
        },
        "ports": [{"name": "http", "port": seed_model_server.port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }
    virtual_service = {
        "metadata": {"name": "huggingface-distilbert", "namespace": "kserve-test"},
        "spec": {
            "hosts": [INGRESS_HOST],
            "gateways": [istio.INGRESS_GATEWAY],
            "http": [
                {"route": [{"destination": {"host": "distilbert-predictor.kserve-test.svc.cluster.local"}}]}
            ],
        },
    }
    server = Ingress(0, lambda: istio.ClusterView.of([service], [endpoints]))
    server.set_istio_table(istio.RoutingTable.build([], [virtual_service]))
    server.serve_forever()
    yield f"http://127.0.0.1:{server.server.server_address[1]}"
    server.server.shutdown()
    server.server.server_close()


def test_suite_passes_against_the_local_model_server(seed_model_server, seed_model_labels):
    result = run_suite(
        {
            "KSA_TARGET_URL": seed_model_server.url,
            "KSA_MODEL_NAME": SEED_MODEL_NAME,
            "KSA_LABELS": ",".join(seed_model_labels),
        }
    )
    assert_every_test_passed(result)


def test_suite_sends_the_host_header_an_ingress_routes_by(ingress):
    result = run_suite(
        {"KSA_TARGET_URL": ingress + "/", "KSA_HOST_HEADER": INGRESS_HOST, "KSA_MODEL_NAME": SEED_MODEL_NAME}
    )
    assert_every_test_passed(result)


@pytest.mark.parametrize("host", [None, "another-model.kserve-test.127.0.0.1.sslip.io"])
def test_suite_without_the_ingress_host_stops_at_the_ingress_404(ingress, host):
    settings = {"KSA_TARGET_URL": ingress, "KSA_MODEL_NAME": SEED_MODEL_NAME, "KSA_READY_TIMEOUT": "1"}
    result = run_suite(settings | ({"KSA_HOST_HEADER": host} if host else {}), timeout=60)
    assert result.returncode != 0
    assert number_of_tests_run(result) == 0
    assert "not ready after 1s" in result.stderr and "answered 404" in result.stderr, result.stderr[-3000:]


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
