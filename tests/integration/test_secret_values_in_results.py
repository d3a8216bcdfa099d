"""k8s_manifest_set never returns the values of a Secret it was given (Ansible's result carries the module's
arguments, `definitions` included, and -vvv or a registered variable shows them): they are masked like
no_log values. Run as Ansible runs it, against a kubeconfig whose server is a closed local port (the
module fails after reading its arguments, and a failure returns them too): no cluster needed."""

from __future__ import annotations

import base64
import json

import pytest

from tests.helpers import write_kubeconfig
from tests.integration.module_runner import run_module

TOKEN, PASSWORD = "hf_AbCdEfGhIjKlMnOp", "s3cr3t-passw0rd"
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "hf-token", "namespace": "models"},
    "stringData": {"HF_TOKEN": TOKEN, "short": "1"},
    "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
}

pytestmark = pytest.mark.slow


@pytest.fixture
def dead_kubeconfig(tmp_path):
    return write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:1", verify=False)


@pytest.mark.parametrize("check", [False, True])
def test_a_secrets_values_given_as_definitions_or_patches_are_masked(dead_kubeconfig, check):
    patch = {
        "kind": "Secret",
        "name": "hf-token",
        "namespace": "models",
        "merge": {"stringData": {"extra": "patched-in-value"}},
    }
    args = {"kubeconfig": dead_kubeconfig, "definitions": [SECRET], "patches": [patch]}
    result = run_module("k8s_manifest_set", args, check=check)
    assert result["msg"].startswith("cannot reach the Kubernetes API server")  # after reading the set
    shown = json.dumps(result)
    assert (
        result["invocation"]["module_args"]["definitions"][0]["kind"] == "Secret"
    )  # the arguments are there
    for value in (TOKEN, SECRET["data"]["password"], "patched-in-value"):
        assert value not in shown
    # A value too short to mask without masking every such string of the result stays (Ansible masks a no_log
    # value wherever it occurs, "1" in "v1" too).
    assert result["invocation"]["module_args"]["definitions"][0]["apiVersion"] == "v1"
