"""Every panel of the KServe models dashboard shows data from a real Prometheus scraping real model servers.

The Prometheus runs the scrape jobs the monitoring role renders (relabel rules unchanged; pod discovery
replaced by a file holding the labels Kubernetes discovery would give, see tests/monitoring/stack.py) and
scrapes two `python -m model.server` processes playing two revisions of one InferenceService.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.monitoring import dashboard
from tests.monitoring.stack import ISVC, NAMESPACE, metrics_stack, send_load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded_stack(tmp_path_factory):
    with metrics_stack(tmp_path_factory.mktemp("metrics-stack")) as stack:
        answers = send_load(stack, seconds=12)
        assert set(answers) == {200, 400}, answers
        stack.wait_scraped_since(time.time())  # what the load counted is in Prometheus
        yield stack


def test_the_rendered_config_is_valid_for_prometheus(loaded_stack):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (bash tests/monitoring/install_prometheus.sh)")
    check = subprocess.run(
        [promtool, "check", "config", str(loaded_stack.workdir / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_kserve_pods_are_scraped_with_their_inferenceservice_and_revision(loaded_stack):
    scraped = {
        (target["labels"]["job"], target["labels"]["pod"]): target
        for target in loaded_stack.targets()
        if target["labels"]["job"].startswith("kserve-")
    }
    aggregated, direct = loaded_stack.pods
    # One target per pod and job, although discovery yields one per container port.
    assert sorted(scraped) == sorted(
        [
            ("kserve-inferenceservices", aggregated.name),
            ("kserve-inferenceservices", direct.name),  # queue-proxy's own metrics port
            ("kserve-model-servers", direct.name),
        ]
    )
    model_targets = [
        scraped["kserve-inferenceservices", aggregated.name],
        scraped["kserve-model-servers", direct.name],
    ]
    for target, pod in zip(model_targets, loaded_stack.pods, strict=True):
        assert target["health"] == "up"
        assert target["scrapeUrl"] == f"http://127.0.0.1:{pod.http_port}/metrics"
        assert {
            key: target["labels"][key] for key in ("namespace", "inferenceservice", "component", "revision")
        } == {
            "namespace": NAMESPACE,
            "inferenceservice": ISVC,
            "component": "predictor",
            "revision": pod.revision,
        }
    # Without aggregation, KServe's prometheus.io/port is queue-proxy's, which does not run here.
    assert scraped["kserve-inferenceservices", direct.name]["scrapeUrl"].endswith(
        f":{direct.absent_port}/metrics"
    )


@pytest.mark.parametrize(
    "query", dashboard.panel_queries(), ids=lambda query: f"{query.panel}:{query.legend}"
)
def test_every_dashboard_query_returns_data(loaded_stack, query):
    series = loaded_stack.query(query.expr)

    assert series, f"panel {query.panel!r} shows no data: {query.expr}"
    assert {item["metric"].get("inferenceservice") for item in series} == {ISVC}
    if "revision" in query.legend:
        assert {item["metric"]["revision"] for item in series} == {pod.revision for pod in loaded_stack.pods}
