"""The project's shape as a user meets it: tags, task lists, argument validation."""

import json
import re

import pytest

from tests.helpers import ROOT, run_playbook

COMPONENTS = ["preflight", "cert_manager", "istio", "knative", "kserve", "monitoring", "models"]


def test_site_lists_one_tag_per_component():
    result = run_playbook("site.yml", "--list-tags")
    assert result.returncode == 0, result.stderr
    tags = set()
    for found in re.findall(r"TASK TAGS: \[([^\]]*)\]", result.stdout):
        tags.update(t.strip() for t in found.split(",") if t.strip())
    # `always` is Ansible's own tag on every role's argument validation task.
    assert tags - {"always"} == set(COMPONENTS)


@pytest.mark.parametrize("component", COMPONENTS)
def test_tag_limits_tasks_to_its_role(component):
    result = run_playbook("site.yml", "--list-tasks", "--tags", component)
    assert result.returncode == 0, result.stderr
    tasks = [
        line.strip() for line in result.stdout.splitlines() if "TAGS:" in line and "TASK TAGS" not in line
    ]
    tasks = [t for t in tasks if not t.startswith("play #")]
    # Validation (tagged `always`: playbooks/validate.yml and Ansible's own argument spec task of each role)
    # and the kserve_ansible role's one check that the cluster answers run whatever the tags; every task that
    # does work belongs to the component.
    working = [t for t in tasks if "always" not in t.split("TAGS:")[1]]
    assert working, result.stdout
    for task in working:
        assert task.startswith(f"{component} :"), f"--tags {component} lists a foreign task: {task}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_role_has_defaults_specs_and_tasks(component):
    role = ROOT / "roles" / component
    for part in ("defaults/main.yml", "meta/argument_specs.yml", "meta/main.yml", "tasks/main.yml"):
        assert (role / part).is_file(), f"roles/{component}/{part} missing"


def test_site_syntax_check_passes():
    result = run_playbook("site.yml", "--syntax-check")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("extra_vars", "variable"),
    [
        ('{"knative_version": [1]}', "knative_version"),
        ('{"kserve_version": 14}', "kserve_version"),
        ('{"cert_manager_wait_timeout": "soon"}', "cert_manager_wait_timeout"),
        ('{"kserve_deployment_mode": "Serverful"}', "kserve_deployment_mode"),
    ],
)
def test_wrong_variable_fails_validation_naming_it_before_any_cluster_call(extra_vars, variable):
    # The kubeconfig does not exist: any task that reached for the cluster would fail differently.
    result = run_playbook(
        "site.yml", "-e", extra_vars, "-e", "kserve_ansible_kubeconfig=/nonexistent/kubeconfig"
    )
    assert result.returncode != 0
    failed = [line for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
    assert len(failed) == 1, result.stdout[-3000:]
    assert variable in failed[0]
    assert "kubeconfig" not in failed[0]


def test_validation_resolves_values_that_refer_to_role_defaults(tmp_path):
    # What a user passes with -e may use a role's defaults, like the models role's own entries do.
    entry = {"name": "custom", "model_name": "bert-sentiment", "image": "{{ models_custom_model_image }}"}
    vars_file = tmp_path / "models.yml"
    vars_file.write_text(json.dumps({"models_inference_services": [entry]}))
    result = run_playbook("playbooks/validate.yml", "-e", f"@{vars_file}")
    assert result.returncode == 0, result.stdout[-3000:]
