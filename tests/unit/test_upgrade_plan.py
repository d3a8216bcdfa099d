"""The upgrade preview (module_utils/upgrade_plan.py) on the releases' own files: which InferenceServices a
KServe upgrade restarts and why, and the command that returns to the previous version."""

import copy
import functools
import json
import shlex

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests
from ansible_collections.kserve_ansible.serving.plugins.module_utils import upgrade_plan as up

from tests.upstream import documents

# What the kserve role merges into inferenceservice-config (roles/kserve/vars/main.yml), with its defaults.
ROLE_PATCHES = [
    {
        "kind": "ConfigMap",
        "name": "inferenceservice-config",
        "namespace": "kserve",
        "merge": {
            "data": {
                "deploy": {"defaultDeploymentMode": "Serverless"},
                "ingress": {"ingressClassName": "istio"},
                "storageInitializer": {
                    "cpuRequest": "100m",
                    "cpuLimit": "1",
                    "memoryRequest": "100Mi",
                    "memoryLimit": "1Gi",
                },
            }
        },
    }
]


@functools.cache
def _release(version):
    objects = documents(f"kserve/{version}/kserve.yaml") + documents(
        f"kserve/{version}/kserve-cluster-resources.yaml"
    )
    return manifests.apply_patches(manifests.dedupe(objects), ROLE_PATCHES)


def release(version):
    """The objects of a release as the kserve role applies them (patched), from the upstream mirror."""
    return copy.deepcopy(_release(version))


def installed(version):
    """(ClusterServingRuntimes, inferenceservice-config) as a cluster with `version` installed has them."""
    runtimes, config = up.target_objects(release(version))
    return list(runtimes.values()), config


def isvc(name, predictor, namespace="kserve-test"):
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"predictor": predictor},
    }


def ksvc(*containers):
    return {"kind": "Service", "spec": {"template": {"spec": {"containers": list(containers)}}}}


def pod(*containers, init=()):
    return {
        "metadata": {"labels": {"component": "predictor"}},
        "spec": {
            "containers": [{"name": c} for c in containers],
            "initContainers": [{"name": c} for c in init],
        },
    }


# The guide's two InferenceServices as the models role applies them, and what KServe 0.14.1 made of them.
HF = isvc(
    "huggingface-distilbert",
    {
        "model": {
            "modelFormat": {"name": "huggingface"},
            "protocolVersion": "v2",
            "args": ["--model_name=distilbert", "--model_id=distilbert-base-uncased-finetuned-sst-2-english"],
        }
    },
)
CUSTOM = isvc(
    "kserve-custom-model-logger",
    {
        "containers": [
            {"name": "kserve-container", "image": "ghcr.io/kserve-ansible/kserve-ansible-model:0.1.0"}
        ],
        "logger": {"mode": "all", "url": "http://kserve-logger-sink.kserve-monitoring.svc.cluster.local"},
    },
)


def workloads_of(version):
    """The predictors' Knative Services as KServe `version` made them."""
    return {
        ("kserve-test", "huggingface-distilbert", "predictor"): ksvc(
            {"name": "kserve-container", "image": f"kserve/huggingfaceserver:v{version}"}
        ),
        ("kserve-test", "kserve-custom-model-logger", "predictor"): ksvc(
            {"name": "kserve-container", "image": "ghcr.io/kserve-ansible/kserve-ansible-model:0.1.0"}
        ),
    }


WORKLOADS = workloads_of("0.14.1")
PODS = {
    ("kserve-test", "huggingface-distilbert", "predictor"): [pod("kserve-container", "queue-proxy")],
    ("kserve-test", "kserve-custom-model-logger", "predictor"): [
        pod("kserve-container", "queue-proxy", "agent")
    ],
}


def preview(source, target, isvcs=(HF, CUSTOM), workloads=None, **kwargs):
    runtimes, config = installed(source)
    entries = up.plan(
        list(isvcs), workloads or workloads_of(source), PODS, runtimes, config, release(target), **kwargs
    )
    return {f"{e['namespace']}/{e['name']}": e for e in entries}


@pytest.mark.parametrize(
    ("source", "target"), [("0.14.1", "0.15.2"), ("0.15.2", "0.16.0"), ("0.15.2", "0.14.1")]
)
def test_an_upgrade_replaces_the_pods_of_the_models_whose_runtime_image_changes(source, target):
    found = preview(source, target)
    hf = found["kserve-test/huggingface-distilbert"]
    assert hf["replaced"] is True
    assert hf["runtimes"] == {"predictor": "kserve-huggingfaceserver"}
    assert (
        f"predictor: runtime kserve-huggingfaceserver containers[kserve-container].image: "
        f"kserve/huggingfaceserver:v{source} -> kserve/huggingfaceserver:v{target}"
    ) in hf["reasons"]
    assert up.replaced_names(found.values()) == ["kserve-test/huggingface-distilbert"]


def test_a_new_logger_image_reaches_only_new_pods_so_the_custom_model_keeps_its_pods():
    custom = preview("0.14.1", "0.15.2")["kserve-test/kserve-custom-model-logger"]
    assert custom["replaced"] is False
    assert custom["reasons"] == []
    assert custom["later"] == [
        "predictor: inferenceservice-config logger image kserve/agent:v0.14.1 -> kserve/agent:v0.15.2 "
        "(injected when a pod is created: running pods keep theirs, new pods get it)"
    ]


def test_the_same_release_again_replaces_nothing():
    found = preview("0.14.1", "0.14.1")
    assert [(e["replaced"], e["reasons"], e["later"]) for e in found.values()] == [(False, [], [])] * 2


def test_with_runtime_version_pinned_a_new_image_tag_of_the_runtime_does_not_count():
    pinned = copy.deepcopy(HF)
    pinned["spec"]["predictor"]["model"]["runtimeVersion"] = "v0.15.2"
    # 0.15.2 -> 0.16.0 changes only the runtime's image tag; 0.14.1 -> 0.15.2 also its env.
    hf = preview("0.15.2", "0.16.0", isvcs=[pinned])["kserve-test/huggingface-distilbert"]
    assert hf["runtimes"] == {"predictor": "kserve-huggingfaceserver"}
    assert hf["replaced"] is False, hf["reasons"]
    hf = preview("0.14.1", "0.15.2", isvcs=[pinned])["kserve-test/huggingface-distilbert"]
    assert hf["reasons"] == [
        "predictor: runtime kserve-huggingfaceserver "
        "containers[kserve-container].env[LMCACHE_USE_EXPERIMENTAL].value: (none) -> True"
    ]


def test_a_named_runtime_is_the_one_compared_and_one_the_release_lacks_is_left_alone():
    named = copy.deepcopy(HF)
    named["spec"]["predictor"]["model"]["runtime"] = "kserve-huggingfaceserver"
    assert (
        preview("0.14.1", "0.15.2", isvcs=[named])["kserve-test/huggingface-distilbert"]["replaced"] is True
    )
    # 0.15.2's multinode runtime is not in 0.14.1: going back leaves it (and its users) as they are.
    multinode = copy.deepcopy(HF)
    multinode["spec"]["predictor"]["model"]["runtime"] = "kserve-huggingfaceserver-multinode"
    workloads = {
        ("kserve-test", "huggingface-distilbert", "predictor"): ksvc(
            {"name": "kserve-container", "image": "kserve/huggingfaceserver:v0.15.2-gpu"}
        )
    }
    back = preview("0.15.2", "0.14.1", isvcs=[multinode], workloads=workloads)[
        "kserve-test/huggingface-distilbert"
    ]
    assert back["runtimes"] == {"predictor": "kserve-huggingfaceserver-multinode"}
    assert back["replaced"] is False


def test_runtime_changes_do_not_count_when_the_upgrade_does_not_apply_the_runtimes():
    hf = preview("0.14.1", "0.15.2", runtimes_managed=False)["kserve-test/huggingface-distilbert"]
    assert hf["replaced"] is False


def test_a_runtime_change_that_only_chooses_runtimes_does_not_replace_pods():
    runtimes, config = installed("0.14.1")
    target = release("0.14.1")
    for obj in target:
        if obj["kind"] == "ClusterServingRuntime" and obj["metadata"]["name"] == "kserve-huggingfaceserver":
            obj["spec"]["supportedModelFormats"].append({"name": "another", "autoSelect": True})
            obj["spec"]["protocolVersions"] = ["v2"]
    entries = up.plan([HF], WORKLOADS, PODS, runtimes, config, target)
    assert entries[0]["replaced"] is False
    for obj in target:
        if obj["kind"] == "ClusterServingRuntime" and obj["metadata"]["name"] == "kserve-huggingfaceserver":
            obj["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    entries = up.plan([HF], WORKLOADS, PODS, runtimes, config, target)
    assert entries[0]["reasons"] == [
        "predictor: runtime kserve-huggingfaceserver containers[kserve-container].env[X].value: (none) -> 1"
    ]


def test_an_explainer_image_in_the_config_is_part_of_the_explainers_pods():
    runtimes, config = installed("0.14.1")
    target = release("0.14.1")
    new = next(
        o for o in target if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "inferenceservice-config"
    )
    explainers = json.loads(new["data"]["explainers"])
    explainers["art"]["image"] = "example.com/art-explainer"
    new["data"]["explainers"] = json.dumps(explainers)
    explained = copy.deepcopy(CUSTOM)
    explained["spec"]["explainer"] = {"art": {"type": "SquareAttack"}}
    entries = up.plan([explained], WORKLOADS, PODS, runtimes, config, target)
    assert entries[0]["replaced"] is True
    assert entries[0]["reasons"] == [
        "explainer: inferenceservice-config explainers image "
        "kserve/art-explainer -> example.com/art-explainer"
    ]


def test_the_preview_lines_name_each_model_and_why():
    lines = up.summary_lines(sorted(preview("0.14.1", "0.15.2").values(), key=lambda e: e["name"]))
    assert lines[0] == "kserve-test/huggingface-distilbert: pods will be replaced (new revision)"
    assert (
        "  because predictor: runtime kserve-huggingfaceserver containers[kserve-container].image: "
        "kserve/huggingfaceserver:v0.14.1 -> kserve/huggingfaceserver:v0.15.2"
    ) in lines
    assert "kserve-test/kserve-custom-model-logger: keeps its pods" in lines
    assert any(line.startswith("  later: predictor: inferenceservice-config logger image") for line in lines)


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("kserve/kserve-controller:v0.14.1", "0.14.1"),
        ("docker.io/kserve/kserve-controller:v0.16.0@sha256:" + "a" * 64, "0.16.0"),
        ("kserve/kserve-controller:latest", ""),
    ],
)
def test_the_running_version_is_the_controllers_image_tag(image, version):
    deployment = {"spec": {"template": {"spec": {"containers": [{"name": "manager", "image": image}]}}}}
    assert up.controller_version(deployment) == version
    assert up.controller_version(None) == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            "/work/.venv/bin/ansible-playbook playbooks/upgrade.yml -e kserve_version=0.15.2 --check --diff",
            "ansible-playbook playbooks/upgrade.yml -e kserve_version=0.14.1",
        ),
        (
            "ansible-playbook playbooks/upgrade.yml -e @inventory/local-cluster.yml -ekserve_version=0.15.2 "
            "-e 'kserve_ansible_mirror_dir=/srv/my mirror' --extra-vars=kserve_version=0.15.2 -C -D",
            "ansible-playbook playbooks/upgrade.yml -e @inventory/local-cluster.yml "
            "-e 'kserve_ansible_mirror_dir=/srv/my mirror' -e kserve_version=0.14.1",
        ),
        (
            # A pin inside a file or among other variables stays; the last -e wins over it.
            "ansible-playbook playbooks/upgrade.yml -e 'kserve_version=0.15.2 kserve_install_method=helm' "
            "--start-at-task 'Apply' -v",
            "ansible-playbook playbooks/upgrade.yml -e 'kserve_version=0.15.2 kserve_install_method=helm' -v "
            "-e kserve_version=0.14.1",
        ),
    ],
)
def test_the_rollback_command_is_this_run_at_the_previous_version(argv, expected):
    assert up.rollback_command(shlex.split(argv), "0.14.1") == expected


def test_no_rollback_command_without_a_version_to_return_to():
    with pytest.raises(up.PlanError, match="not known"):
        up.rollback_command(["ansible-playbook", "playbooks/upgrade.yml"], "")


def test_the_upgrade_waits_for_a_new_revision_of_each_component_the_preview_names():
    served = []
    for model in (HF, CUSTOM):
        model = copy.deepcopy(model)
        name = model["metadata"]["name"]
        model["status"] = {"components": {"predictor": {"latestCreatedRevision": f"{name}-predictor-00001"}}}
        served.append(model)
    entries = list(preview("0.14.1", "0.15.2", isvcs=served).values())
    assert [e["components"] for e in entries] == [["predictor"], []]
    assert up.expected_revisions(entries) == [
        {
            "namespace": "kserve-test",
            "name": "huggingface-distilbert",
            "component": "predictor",
            "revision": "huggingface-distilbert-predictor-00001",
        }
    ]
    # RawDeployment components have no revision: nothing to wait for by revision.
    assert up.expected_revisions(list(preview("0.14.1", "0.15.2").values())) == []


def test_a_model_still_on_an_older_runtime_image_is_compared_by_the_image_it_runs():
    # The runtimes went back to 0.14.1 after the model was last reconciled on 0.16.0 (KServe does not watch
    # runtimes): the upgrade to 0.15.2 replaces the 0.16.0 image it runs.
    runtimes, config = installed("0.14.1")
    entries = up.plan([HF], workloads_of("0.16.0"), PODS, runtimes, config, release("0.15.2"))
    assert entries[0]["runtimes"] == {"predictor": "kserve-huggingfaceserver"}
    assert (
        "predictor: runtime kserve-huggingfaceserver containers[kserve-container].image: "
        "kserve/huggingfaceserver:v0.16.0 -> kserve/huggingfaceserver:v0.15.2"
    ) in entries[0]["reasons"]
    # Already on the target's image: only what else differs between the runtimes counts.
    entries = up.plan([HF], workloads_of("0.16.0"), PODS, *installed("0.15.2"), release("0.16.0"))
    assert entries[0]["replaced"] is False, entries[0]["reasons"]
