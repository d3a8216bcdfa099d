"""Many InferenceServices at once (issue #21) on the local cluster's real KServe and Knative controllers:

- inference_service_wait over many names (one watch): the one that cannot be scheduled is reported with the
  scheduler's reason, the others as Ready;
- the models role over a dozen models: `--check --diff` names exactly the InferenceServices that would be
  created or updated and changes nothing; the real run then does that; the next run changes nothing; the
  summary is a table.

The models are Hugging Face InferenceServices with small requests (kwok plays their pods: no process).
"""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.cluster_plugin import local_playbook
from tests.helpers import hf_entry, recap
from tests.integration.isvc_cluster import IsvcCluster
from tests.integration.module_runner import run_module

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "isvc-many-test"
MODELS_NAMESPACE = "models-many-test"
TOO_MUCH_CPU = "1000"  # no fake node offers that much: the real scheduler reports Insufficient cpu


@pytest.fixture(scope="module")
def many(serving_platform):
    kube = IsvcCluster(serving_platform.kubeconfig, NAMESPACE).set_up()
    kube.tear_down()  # what an earlier run may have left
    yield kube
    kube.tear_down()


def test_a_wait_over_many_reports_the_one_that_fails_with_its_diagnosis_and_the_others_as_ready(many):
    names = [f"many-{index}" for index in range(8)]
    for name in names:
        many.create(name)
    many.create("many-hungry", cpu=TOO_MUCH_CPU)
    result = run_module(
        "inference_service_wait",
        {
            "names": [*names, "many-hungry"],
            "namespace": NAMESPACE,
            "kubeconfig": many.kubeconfig,
            "timeout": 300,
            "terminal_grace": 2,
            "check_interval": 1,
        },
    )
    assert result["failed"]
    assert result["not_ready"] == ["many-hungry"]
    by_name = {entry["name"]: entry for entry in result["results"]}
    assert [name for name in names if by_name[name]["ready"]] == names
    assert all(by_name[name]["url"].startswith(f"http://{name}.{NAMESPACE}.") for name in names)
    hungry = by_name["many-hungry"]
    assert hungry["terminal"] is True and "unschedulable" in hungry["failure_kinds"]
    assert "Insufficient cpu" in hungry["msg"]
    assert result["msg"].startswith(
        f"1 of 9 InferenceServices in {NAMESPACE} are not Ready: many-hungry (8 Ready)"
    )
    assert "InferenceService isvc-many-test/many-hungry cannot become Ready without a change" in result["msg"]
    assert "lower the predictor's resources.requests" in result["msg"]


# ----- the models role ------------------------------------------------------------------------------------


def models(cluster, tmp_path, entries, *args, state="present"):
    path = tmp_path / "models.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "models_namespace": MODELS_NAMESPACE,
                "models_inference_services": entries,
                "models_state": state,
            }
        )
    )
    return local_playbook(cluster, "site.yml", "-e", f"@{path}", *args, tags="models")


def ok(result) -> dict:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return recap(result.stdout)


def test_check_over_many_models_reports_exactly_the_ones_that_would_change(serving_platform, tmp_path, many):
    entries = [hf_entry(index) for index in range(12)]
    try:
        ok(models(serving_platform, tmp_path, entries))
        changed = copy.deepcopy(entries)
        changed[3]["resources"]["requests"]["cpu"] = "20m"
        changed[7]["args"] = ["--max_length=64"]
        changed.append(hf_entry(99))

        check = models(serving_platform, tmp_path, changed, "--check", "--diff")
        ok(check)
        assert (
            "InferenceServices would be created (1): hf-099; would be updated (2): hf-003, hf-007; "
            "10 unchanged" in check.stdout
        )
        live = IsvcCluster(serving_platform.kubeconfig, MODELS_NAMESPACE)
        assert live.get("hf-003")["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"] == "10m"
        with pytest.raises(Exception, match="Not Found"):
            live.get("hf-099")

        applied = models(serving_platform, tmp_path, changed)
        ok(applied)
        assert "InferenceServices created (1): hf-099; updated (2): hf-003, hf-007; 10 unchanged" in (
            applied.stdout
        )
        assert "13/13 Ready" in applied.stdout
        assert "NAME" in applied.stdout and "SMOKE TEST" in applied.stdout  # the table (more than 10)

        again = models(serving_platform, tmp_path, changed)
        assert ok(again)["changed"] == 0
        assert "InferenceServices all 13 unchanged" in again.stdout
    finally:
        ok(models(serving_platform, tmp_path, [*entries, hf_entry(99)], state="absent"))
