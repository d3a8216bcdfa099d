"""No usable cluster (its API server does not answer, or the kubeconfig has no such context): each of our
modules fails with one line naming the API server's address, or the context, and what failed. No traceback,
no client library's wrapper text. No cluster needed: the kubeconfig points at a closed local port."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_playbook, write_kubeconfig
from tests.integration.module_runner import run_module
from tests.upstream import UPSTREAM_DIR

DEAD_SERVER = "https://127.0.0.1:1"  # nothing listens on port 1 (a privileged port)
REFUSED = f"cannot reach the Kubernetes API server {DEAD_SERVER}: connection refused"
NO_CONTEXT = "the kubeconfig has no context 'nope'"
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}
# One task per module, with the least each one needs to reach for the cluster.
MODULE_ARGS = {
    "k8s_manifest_set": {"definitions": [CONFIG_MAP]},
    "cluster_preflight": {},
    "inference_service_wait": {"name": "sklearn-iris", "namespace": "default", "timeout": 5},
    "inference_probe": {"name": "sklearn-iris", "namespace": "default", "instances": [[1, 2]]},
    "kserve_upgrade_plan": {"version": "0.15.2", "mirror_dir": str(UPSTREAM_DIR)},
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dead_kubeconfig(tmp_path_factory):
    return write_kubeconfig(tmp_path_factory.mktemp("dead") / "kubeconfig", DEAD_SERVER, verify=False)


def assert_one_line(result: dict, line: str) -> None:
    assert result.get("failed"), result
    assert "Traceback" not in json.dumps(result)
    assert "\n" not in result["msg"]
    assert line in result["msg"], result["msg"]
    for wrapper in (
        "NewConnectionError",
        "MaxRetryError",
        "HTTPSConnectionPool",
        "unknown type",
        "Traceback",
    ):
        assert wrapper not in result["msg"]


@pytest.mark.parametrize("module", sorted(MODULE_ARGS))
def test_a_dead_api_server_is_one_line_with_its_address(module, dead_kubeconfig):
    assert_one_line(run_module(module, {**MODULE_ARGS[module], "kubeconfig": dead_kubeconfig}), REFUSED)


@pytest.mark.parametrize("module", sorted(MODULE_ARGS))
def test_a_missing_context_is_one_line_naming_it(module, dead_kubeconfig):
    args = {**MODULE_ARGS[module], "kubeconfig": dead_kubeconfig, "context": "nope"}
    assert_one_line(run_module(module, args), NO_CONTEXT)


def test_check_mode_says_the_same(dead_kubeconfig):
    args = {"definitions": [CONFIG_MAP], "kubeconfig": dead_kubeconfig}
    assert_one_line(run_module("k8s_manifest_set", args, check=True), REFUSED)


def test_a_components_play_fails_at_its_first_cluster_call_with_that_line(dead_kubeconfig):
    result = run_playbook(
        "site.yml", "--tags", "knative", "-e", f"kserve_ansible_kubeconfig={dead_kubeconfig}"
    )
    assert result.returncode != 0
    failed = [line for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
    assert len(failed) == 1, result.stdout[-3000:]
    assert REFUSED in failed[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_knatives_ingress_wait_fails_with_the_clients_error_not_its_own_condition(dead_kubeconfig):
    # The cluster stops answering after the run's check (simulated by skipping it): the wait's `until`
    # must not hide kubernetes.core's failure behind "object of type 'dict' has no attribute 'resources'".
    result = run_playbook(
        "playbooks/knative.yml",
        "-e",
        f"kserve_ansible_kubeconfig={dead_kubeconfig}",
        "-e",
        "kserve_ansible_cluster_answered=true",
    )
    failed = [line for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
    assert len(failed) == 1, result.stdout[-3000:]
    assert "127.0.0.1" in failed[0] and "Connection refused" in failed[0]
    assert "conditional" not in failed[0]
