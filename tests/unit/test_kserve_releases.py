"""Every KServe release of the catalog, read from the upstream mirror as the kserve role reads it: what
differs between releases (0.16.0's LLMInferenceService CRDs, second Certificate, webhooks and controller) is
handled by what the manifest says, not by lists of names; and the local cluster knows what runs for each
release's images.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests as m
from ansible_collections.kserve_ansible.serving.plugins.module_utils import releases as r

from devcluster import programs
from tests.upstream import UPSTREAM_DIR

ROOT = pathlib.Path(__file__).resolve().parents[2]
VERSIONS = r.supported_versions("kserve")
ADMISSION = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
INJECT_CA = "cert-manager.io/inject-ca-from"


def release_objects(version: str, name: str = "kserve.yaml") -> list[dict]:
    """The objects the kserve role applies for a file of a release, read and verified from the mirror."""
    source = m.ManifestSource.from_params(
        {"name": name}, mirror_dir=str(UPSTREAM_DIR), component="kserve", version=version
    )
    return m.load_manifest_set([source], [], fetch_url=None)


def role_patches() -> list[dict]:
    """The kserve role's patch of inferenceservice-config (vars/main.yml) with its default settings."""
    defaults = yaml.safe_load((ROOT / "roles/kserve/defaults/main.yml").read_text())
    config = {
        "deploy": {"defaultDeploymentMode": defaults["kserve_deployment_mode"]},
        "ingress": {"ingressClassName": defaults["kserve_ingress_class_name"]},
        "storageInitializer": {"memoryLimit": defaults["kserve_storage_initializer_memory_limit"]},
    }
    return [
        {
            "kind": "ConfigMap",
            "name": "inferenceservice-config",
            "namespace": "kserve",
            "merge": {"data": config},
        }
    ]


def test_the_catalog_has_the_three_kserve_releases():
    assert VERSIONS == ["0.14.1", "0.15.2", "0.16.0"]


@pytest.mark.parametrize("version", VERSIONS)
def test_crds_go_first_and_every_custom_resource_of_the_release_after_them(version):
    objects = release_objects(version)
    crds, middle, admission = m.apply_phases(objects)
    crd_kinds = {
        (c["spec"]["group"], c["spec"]["names"]["kind"])
        for c in crds
        if c["kind"] == "CustomResourceDefinition"
    }
    in_file = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert len([c for c in crds if c["kind"] == "CustomResourceDefinition"]) == len(in_file)
    custom = [o for o in objects if (m.api_group(o["apiVersion"]), o["kind"]) in crd_kinds]
    assert all(o in middle for o in custom)
    assert {o["kind"] for o in admission} <= set(ADMISSION)
    assert len(admission) == len([o for o in objects if o["kind"] in ADMISSION])


def test_0_16_0_brings_llm_inference_service_crds_and_their_configs():
    crds = {
        o["metadata"]["name"] for o in release_objects("0.16.0") if o["kind"] == "CustomResourceDefinition"
    }
    older = {
        o["metadata"]["name"] for o in release_objects("0.15.2") if o["kind"] == "CustomResourceDefinition"
    }
    assert crds - older == {
        "llminferenceservices.serving.kserve.io",
        "llminferenceserviceconfigs.serving.kserve.io",
        "inferencepools.inference.networking.x-k8s.io",
        "inferencemodels.inference.networking.x-k8s.io",
    }
    configs = [o for o in release_objects("0.16.0") if o["kind"] == "LLMInferenceServiceConfig"]
    assert len(configs) == 8
    assert {m.phase_of(o) for o in configs} == {1}  # after their CRD is Established, before the webhooks


@pytest.mark.parametrize("version", VERSIONS)
def test_every_webhook_calls_a_service_and_trusts_a_certificate_of_the_same_release(version):
    """So the waits that follow the manifest (Deployments rolled out, webhook writes retried while not served)
    cover 0.16.0's second Certificate and the llmisvc webhooks with no list of names in the role."""
    objects = release_objects(version)
    services = {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Service"
    }
    certificates = {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects if o["kind"] == "Certificate"
    }
    for config in (o for o in objects if o["kind"] in ADMISSION):
        assert config["metadata"]["annotations"][INJECT_CA] in certificates
        for webhook in config["webhooks"]:
            service = webhook["clientConfig"]["service"]
            assert (service["namespace"], service["name"]) in services
    expected = {"0.14.1": 1, "0.15.2": 1, "0.16.0": 2}[version]
    assert len(certificates) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_the_roles_settings_merge_into_each_releases_inferenceservice_config(version):
    patched = m.apply_patches(release_objects(version), role_patches())
    [config] = [
        o for o in patched if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "inferenceservice-config"
    ]
    assert '"defaultDeploymentMode": "Serverless"' in config["data"]["deploy"]
    assert '"memoryLimit": "1Gi"' in config["data"]["storageInitializer"]


# ----- the local cluster: what runs for each release's images (devcluster/programs.yaml) --------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_the_local_cluster_runs_each_releases_controllers_from_the_build_of_that_version(version, tmp_path):
    pins = {"KNATIVE_SERVING_MODULE_VERSION": "v0.43.0", "KSERVE_VERSION": "v0.14.1"}
    for binary in ("kserve-manager", "kserve-agent", "kserve-llmisvc"):
        (tmp_path / f"{binary}-v{version}").write_text("")
    ran = {}
    for deployment in (o for o in release_objects(version) if o["kind"] in ("Deployment", "DaemonSet")):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            found = programs.resolve(container, pins=pins, bindir=tmp_path)
            ran[container["image"]] = found.argv[0] if isinstance(found, programs.Program) else found
    assert ran[f"kserve/kserve-controller:v{version}"] == str(tmp_path / f"kserve-manager-v{version}")
    # left to kwok (Running, no process): LocalModelCache's controller and node agent
    assert ran[f"kserve/kserve-localmodel-controller:v{version}"] is None
    assert ran[f"kserve/kserve-localmodelnode-agent:v{version}"] is None
    if version == "0.16.0":  # the LLMInferenceService controller serves the webhook of its configs: real
        assert ran["kserve/llmisvc-controller:v0.16.0"] == str(tmp_path / "kserve-llmisvc-v0.16.0")


def test_an_image_of_a_version_not_built_names_the_build_command(tmp_path):
    pins = {"KNATIVE_SERVING_MODULE_VERSION": "v0.43.0", "KSERVE_VERSION": "v0.14.1"}
    with pytest.raises(programs.ImageError) as error:
        programs.resolve(
            {"image": "kserve/llmisvc-controller:v0.16.0", "command": ["/manager"]},
            pins=pins,
            bindir=tmp_path,
        )
    assert "`bash devcluster/gotools/build.sh kserve@v0.16.0`" in str(error.value)
