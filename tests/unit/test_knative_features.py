"""Knative settings the roles write: the feature flags (config-features) the models' InferenceServices need,
which the models role turns on, and the knative role's registries-skipping-tag-resolving and feature flags,
merged into the release's own ConfigMaps (read from the upstream mirror)."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.filter import inference_services
from ansible_collections.kserve_ansible.serving.plugins.module_utils import knative_features as kf
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests

from tests.helpers import ROOT, run_playbook
from tests.upstream import default_release_path

SERVING_CORE = default_release_path("knative-serving", "knative_version", "serving-core.yaml")
SETTINGS = {
    "namespace": "kserve-test",
    "kserve_version": "0.14.1",
    "deployment_mode": "Serverless",
    "logger_url": "",
    "hf_token_secret": "",
    "rollout": "direct",
}
GPU_NODES = {"node.kubernetes.io/instance-type": "gpu"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
ZONE_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
        }
    }
}


def manifest(name, **entry):
    return inference_services.inference_service_manifest(
        {"name": name, "image": "ghcr.io/x/model:1", **entry}, SETTINGS
    )


def release_config_map(name):
    for doc in yaml.safe_load_all(SERVING_CORE.read_text()):
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"{name} not in {SERVING_CORE}")


# ----- which flags the InferenceServices need ------------------------------------------------------------
def test_flag_names_are_knatives_own():
    documented = yaml.safe_load(release_config_map("config-features")["data"]["_example"]) or {}
    assert set(kf.FLAGS_BY_POD_FIELD.values()) <= set(documented)
    assert {
        "kubernetes.podspec-nodeselector",
        "kubernetes.podspec-tolerations",
        "kubernetes.podspec-affinity",
    } <= set(kf.FLAGS_BY_POD_FIELD.values())


def test_models_without_scheduling_fields_need_no_flag():
    assert kf.flags_needed([manifest("plain"), manifest("other", min_replicas=1, node_selector={})]) == {}


def test_each_scheduling_field_needs_its_flag_and_names_who_needs_it():
    needed = kf.flags_needed(
        [
            manifest("gpu", node_selector=GPU_NODES, tolerations=GPU_TAINT),
            manifest("zoned", namespace="team-a", predictor_extra={"affinity": ZONE_AFFINITY}),
            manifest("also-gpu", node_selector=GPU_NODES),
        ]
    )
    assert needed == {
        "kubernetes.podspec-affinity": ["team-a/zoned"],
        "kubernetes.podspec-nodeselector": ["kserve-test/gpu", "kserve-test/also-gpu"],
        "kubernetes.podspec-tolerations": ["kserve-test/gpu"],
    }


def test_raw_deployment_models_need_no_knative_flag():
    assert kf.flags_needed([manifest("raw", deployment_mode="RawDeployment", node_selector=GPU_NODES)]) == {}
    # KServe 0.16 names RawDeployment "Standard" (an InferenceService the cluster already has may say so)
    standard = manifest("std", deployment_mode="RawDeployment", node_selector=GPU_NODES)
    standard["metadata"]["annotations"][kf.DEPLOYMENT_MODE_ANNOTATION] = "Standard"
    assert kf.flags_needed([standard]) == {}


def test_transformer_fields_count_too():
    isvc = manifest("with-transformer")
    isvc["spec"]["transformer"] = {"tolerations": GPU_TAINT, "containers": [{"image": "t:1"}]}
    assert kf.flags_needed([isvc]) == {"kubernetes.podspec-tolerations": ["kserve-test/with-transformer"]}


def test_flags_are_enabled_unless_already_allowed():
    needed = {"kubernetes.podspec-nodeselector": ["a/b"], "kubernetes.podspec-tolerations": ["a/b"]}
    live = {
        "kubernetes.podspec-tolerations": "allowed",
        "kubernetes.podspec-affinity": "disabled",
        "_example": "#",
    }
    assert kf.features_data(needed, live) == {
        "kubernetes.podspec-nodeselector": "enabled",
        "kubernetes.podspec-tolerations": "allowed",
    }
    assert kf.features_data(needed, {"kubernetes.podspec-nodeselector": "disabled"}) == {
        "kubernetes.podspec-nodeselector": "enabled",
        "kubernetes.podspec-tolerations": "enabled",
    }


def test_only_knatives_values_are_valid():
    assert kf.invalid_values({"kubernetes.podspec-affinity": "enabled", "multi-container": "allowed"}) == {}
    assert kf.invalid_values({"kubernetes.podspec-affinity": True, "x": "on"}) == {
        "kubernetes.podspec-affinity": True,
        "x": "on",
    }


# ----- the roles' variables, as Ansible renders them -------------------------------------------------------
def render_role_vars(tmp_path, role, expression, extra_vars=None):
    """`expression` rendered with the role's defaults and vars (and `extra_vars` as -e), as JSON."""
    out = tmp_path / "out.json"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars_files": [
                        str(ROOT / f"roles/{role}/defaults/main.yml"),
                        str(ROOT / f"roles/{role}/vars/main.yml"),
                    ],
                    "tasks": [
                        {
                            "ansible.builtin.copy": {
                                "content": f"{{{{ {expression} | to_json }}}}",
                                "dest": str(out),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    args = [str(playbook)]
    if extra_vars is not None:
        args += ["-e", json.dumps(extra_vars)]
    result = run_playbook(*args, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def patched(patches, name):
    objects = manifests.apply_patches([release_config_map(name)], [p for p in patches if p["name"] == name])
    return objects[0]["data"]


def test_knative_role_writes_nothing_extra_by_default(tmp_path):
    assert render_role_vars(tmp_path, "knative", "knative_config_patches") == []


def test_knative_role_writes_registries_and_flags_into_the_release_config_maps(tmp_path):
    local = yaml.safe_load((ROOT / "inventory/local-cluster.yml").read_text())
    registries = local["knative_registries_skipping_tag_resolving"]
    features = {"kubernetes.podspec-affinity": "enabled"}
    patches = render_role_vars(
        tmp_path,
        "knative",
        "knative_config_patches",
        {"knative_registries_skipping_tag_resolving": registries, "knative_config_features": features},
    )
    deployment = patched(patches, "config-deployment")
    assert deployment["registries-skipping-tag-resolving"] == ",".join(registries)
    assert "queue-sidecar-image" in deployment and "_example" in deployment  # the release's keys stay
    flags = patched(patches, "config-features")
    assert flags["kubernetes.podspec-affinity"] == "enabled" and "_example" in flags


def test_local_cluster_skips_the_registries_of_its_images():
    local = yaml.safe_load((ROOT / "inventory/local-cluster.yml").read_text())
    registries = local["knative_registries_skipping_tag_resolving"]
    model_defaults = yaml.safe_load((ROOT / "roles/models/defaults/main.yml").read_text())
    our_image = model_defaults["models_custom_model_image"]
    assert {"kind.local", "ko.local", "dev.local", "index.docker.io", "docker.io"} <= set(registries)
    assert our_image.split("/")[0] in registries


def test_models_role_needs_no_flag_for_its_default_models(tmp_path):
    assert render_role_vars(tmp_path, "models", "_models_knative_flags") == {}


def test_models_role_asks_for_the_flags_of_its_models(tmp_path):
    models = [
        {"name": "gpu", "image": "ghcr.io/x/model:1", "node_selector": GPU_NODES, "tolerations": GPU_TAINT},
        {
            "name": "raw",
            "image": "ghcr.io/x/model:1",
            "node_selector": GPU_NODES,
            "deployment_mode": "RawDeployment",
        },
        {"name": "gone", "image": "ghcr.io/x/model:1", "node_selector": GPU_NODES, "state": "absent"},
    ]
    flags = render_role_vars(
        tmp_path, "models", "_models_knative_flags", {"models_inference_services": models}
    )
    assert flags == {
        "kubernetes.podspec-nodeselector": ["kserve-test/gpu"],
        "kubernetes.podspec-tolerations": ["kserve-test/gpu"],
    }


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"knative_config_features": {"kubernetes.podspec-affinity": True}},
            '"kubernetes.podspec-affinity": true',
        ),
        ({"knative_registries_skipping_tag_resolving": ["a.io,b.io"]}, '["a.io,b.io"]'),
    ],
)
def test_knative_role_refuses_bad_settings_before_touching_a_cluster(tmp_path, overrides, problem):
    playbook = tmp_path / "knative.yml"
    playbook.write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "knative"}]}])
    )
    env = {"ANSIBLE_ROLES_PATH": str(ROOT / "roles")}
    extra = {"kserve_ansible_extra_releases": {}, "kserve_ansible_mirror_dir": "", **overrides}
    result = run_playbook(str(playbook), "-e", json.dumps(extra), env=env, timeout=120)
    assert result.returncode != 0
    assert "Check the Knative settings" in result.stdout and problem in result.stdout, result.stdout[-3000:]
