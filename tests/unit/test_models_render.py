"""The models role's InferenceServices as a user gets them: `playbooks/render.yml` writes the seed's two
manifests, they are valid against KServe 0.14.1's InferenceService CRD (read from the upstream mirror at test
time, strict about unknown fields), and each entry's options land where KServe reads them — including the
hf:// storageUri workaround for KServe < 0.15."""

from __future__ import annotations

import functools
import json

import jsonschema
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.kserve_ansible.serving.plugins.filter import inference_services as filters

from tests.helpers import run_playbook
from tests.upstream import default_release_path

CRD = default_release_path("kserve", "kserve_version", "charts/kserve-crd/templates")
CRD_FILE = CRD / "serving.kserve.io_inferenceservices.yaml"
SEED_FILES = {"huggingface-distilbert.yaml", "custom-transformer.yaml"}


SETTINGS = {
    "namespace": "kserve-test",
    "kserve_version": "0.14.1",
    "deployment_mode": "Serverless",
    "logger_url": "http://sink.monitoring.svc.cluster.local",
    "hf_token_secret": "hf-token",
    "rollout": "direct",
}


def render(model: dict, **settings) -> dict:
    return filters.inference_service_manifest(model, {**SETTINGS, **settings})


# ----- the CRD schema --------------------------------------------------------------------------------------
def _strict(schema: dict) -> dict:
    """An object schema with listed properties refuses others (the API server's strict field validation),
    unless it keeps unknown fields on purpose."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


@functools.cache
def isvc_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD_FILE.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def schema_errors(manifest: dict) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in isvc_validator().iter_errors(manifest)
    ]


# ----- the render playbook, as a user runs it -------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("deploy")
    result = run_playbook("playbooks/render.yml", "-e", f"models_render_dir={out}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {p.name: yaml.safe_load(p.read_text()) for p in out.iterdir()}


def test_render_writes_the_seeds_two_manifests(rendered):
    assert set(rendered) == SEED_FILES


@pytest.mark.parametrize("name", sorted(SEED_FILES))
def test_rendered_manifest_is_valid_for_the_kserve_crd(rendered, name):
    assert schema_errors(rendered[name]) == []


def test_distilbert_is_the_seeds_huggingface_service(rendered):
    isvc = rendered["huggingface-distilbert.yaml"]
    assert isvc["metadata"]["name"] == "huggingface-distilbert"
    assert isvc["metadata"]["namespace"] == "kserve-test"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "huggingface"}
    assert model["protocolVersion"] == "v2"
    assert model["args"] == [
        "--model_name=distilbert",
        "--model_id=distilbert-base-uncased-finetuned-sst-2-english",
        "--enable_docs_url=True",
    ]
    assert "storageUri" not in model
    assert model["resources"]["requests"]["memory"] == "2Gi"


def test_custom_model_logs_requests_to_the_monitoring_sink(rendered):
    predictor = rendered["custom-transformer.yaml"]["spec"]["predictor"]
    assert predictor["logger"] == {
        "mode": "all",
        "url": "http://kserve-logger-sink.kserve-monitoring.svc.cluster.local",
    }
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container"
    assert "kserve-ansible-model" in container["image"]
    assert container["args"][0] == "--model_name=bert-sentiment"


def test_hf_token_comes_from_a_secret_never_inline(rendered):
    for isvc in rendered.values():
        spec = isvc["spec"]["predictor"].get("model") or isvc["spec"]["predictor"]["containers"][0]
        token = next(e for e in spec["env"] if e["name"] == "HF_TOKEN")
        assert "value" not in token
        assert token["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN", "optional": True}


def test_render_with_hf_storage_uri_on_kserve_014_rewrites_and_warns(tmp_path):
    models = [
        {
            "name": "sentiment",
            "model_format": "huggingface",
            "storage_uri": "hf://distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        }
    ]
    varfile = tmp_path / "vars.yml"
    varfile.write_text(
        yaml.safe_dump({"models_inference_services": models, "models_render_dir": str(tmp_path)})
    )
    result = run_playbook("playbooks/render.yml", "-e", f"@{varfile}")
    assert result.returncode == 0, result.stdout[-3000:]
    output = " ".join((result.stdout + result.stderr).split())
    assert "[WARNING]" in output
    assert "KServe 0.14.1 rejects hf:// storageUris" in output
    model = yaml.safe_load((tmp_path / "sentiment.yaml").read_text())["spec"]["predictor"]["model"]
    assert "storageUri" not in model
    assert "--model_id=distilbert/distilbert-base-uncased-finetuned-sst-2-english" in model["args"]


def test_render_refuses_a_bad_entry_with_its_name_and_field(tmp_path):
    varfile = tmp_path / "vars.yml"
    bad = [{"name": "both", "image": "example/model:1", "model_format": "huggingface"}]
    varfile.write_text(yaml.safe_dump({"models_inference_services": bad, "models_render_dir": str(tmp_path)}))
    result = run_playbook("playbooks/render.yml", "-e", f"@{varfile}")
    assert result.returncode != 0
    output = " ".join(result.stdout.split())
    assert "InferenceService 'both': give either image" in output


def test_render_refuses_an_unknown_scale_metric_before_rendering(tmp_path):
    varfile = tmp_path / "vars.yml"
    bad = [{"name": "x", "image": "example/model:1", "scale_metric": "latency"}]
    varfile.write_text(yaml.safe_dump({"models_inference_services": bad, "models_render_dir": str(tmp_path)}))
    result = run_playbook("playbooks/render.yml", "-e", f"@{varfile}")
    assert result.returncode != 0
    assert "scale_metric" in result.stdout and "latency" in result.stdout
    assert not (tmp_path / "x.yaml").exists()


# ----- the rendering rules (the role's filter, called directly) -------------------------------------------
def test_hf_storage_uri_is_kept_on_kserve_015():
    uri = "hf://distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    model = render({"name": "m", "model_format": "huggingface", "storage_uri": uri}, kserve_version="0.15.0")
    assert model["spec"]["predictor"]["model"]["storageUri"] == uri
    assert not any(a.startswith("--model_id") for a in model["spec"]["predictor"]["model"]["args"])


def test_hf_storage_uri_revision_becomes_model_revision_on_kserve_014():
    isvc = render({"name": "m", "model_format": "huggingface", "storage_uri": "hf://org/model:v2"})
    args = isvc["spec"]["predictor"]["model"]["args"]
    assert args[1:] == ["--model_id=org/model", "--model_revision=v2"]
    assert "storageUri" not in isvc["spec"]["predictor"]["model"]


def test_hf_storage_uri_for_our_model_server_is_rewritten_too():
    isvc = render({"name": "m", "image": "r/kserve-ansible-model:1", "storage_uri": "hf://org/model"})
    container = isvc["spec"]["predictor"]["containers"][0]
    assert "--model_id=org/model" in container["args"]
    assert all(e["name"] != "STORAGE_URI" for e in container.get("env", []))


def test_other_storage_uris_reach_the_storage_initializer():
    model = render({"name": "m", "model_format": "huggingface", "storage_uri": "s3://bucket/model"})
    assert model["spec"]["predictor"]["model"]["storageUri"] == "s3://bucket/model"
    container = render({"name": "c", "image": "r/kserve-ansible-model:1", "storage_uri": "gs://b/m"})
    env = container["spec"]["predictor"]["containers"][0]["env"]
    assert {"name": "STORAGE_URI", "value": "gs://b/m"} in env
    assert "--model_dir=/mnt/models" in container["spec"]["predictor"]["containers"][0]["args"]
    assert all(e["name"] != "HF_TOKEN" for e in env)  # nothing comes from the Hub


def test_custom_model_without_model_id_serves_mnt_models():
    isvc = render({"name": "c", "model_name": "bert-sentiment", "image": "r/kserve-ansible-model:1"})
    assert isvc["spec"]["predictor"]["containers"][0]["args"] == [
        "--model_name=bert-sentiment",
        "--model_dir=/mnt/models",
        "--enable_grpc=false",
    ]


def test_our_model_server_is_ready_only_once_its_model_answers():
    """Our server listens while the model loads and answers 503 on /v1/models/NAME until it has loaded."""
    isvc = render({"name": "c", "model_name": "bert-sentiment", "image": "r/kserve-ansible-model:1"})
    probe = isvc["spec"]["predictor"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/v1/models/bert-sentiment", "port": 8080}
    assert probe["periodSeconds"] >= 1 and probe["failureThreshold"] >= 1
    assert schema_errors(isvc) == []


def test_the_entry_overrides_or_drops_the_readiness_probe():
    own = {"httpGet": {"path": "/v2/health/ready", "port": 8080}, "periodSeconds": 10}
    isvc = render({"name": "c", "image": "r/kserve-ansible-model:1", "readiness_probe": own})
    assert isvc["spec"]["predictor"]["containers"][0]["readinessProbe"] == own
    isvc = render({"name": "c", "image": "r/kserve-ansible-model:1", "readiness_probe": {}})
    assert "readinessProbe" not in isvc["spec"]["predictor"]["containers"][0]


def test_grpc_stays_off_unless_the_entry_asks_for_it():
    """The container's args replace the image's CMD, and KServe's server turns gRPC on by default."""
    off = render({"name": "c", "image": "r/kserve-ansible-model:1", "args": ["--enable_docs_url=true"]})
    args = off["spec"]["predictor"]["containers"][0]["args"]
    assert "--enable_grpc=false" in args
    assert args[-1] == "--enable_docs_url=true"  # the entry's own args come last and win
    on = render({"name": "c", "image": "r/kserve-ansible-model:1", "grpc": True})
    assert "--enable_grpc=true" in on["spec"]["predictor"]["containers"][0]["args"]
    runtime = render({"name": "h", "model_format": "huggingface", "model_id": "a/b"})
    assert not any("grpc" in arg for arg in runtime["spec"]["predictor"]["model"]["args"])


def test_autoscaling_placement_and_raw_deployment():
    isvc = render(
        {
            "name": "m",
            "image": "r/kserve-ansible-model:1",
            "min_replicas": 1,
            "max_replicas": 4,
            "scale_target": 8,
            "scale_metric": "concurrency",
            "node_selector": {"pool": "cpu"},
            "tolerations": [{"key": "models", "operator": "Exists", "effect": "NoSchedule"}],
            "deployment_mode": "RawDeployment",
        }
    )
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert (predictor["scaleTarget"], predictor["scaleMetric"]) == (8, "concurrency")
    assert predictor["nodeSelector"] == {"pool": "cpu"}
    assert predictor["tolerations"][0]["key"] == "models"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert schema_errors(isvc) == []


def test_canary_rollout_turns_on_tag_routing_so_the_canary_has_its_own_url():
    isvc = render({"name": "m", "image": "r/kserve-ansible-model:1"}, rollout="canary")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"


@pytest.mark.parametrize(
    ("model", "settings", "message"),
    [
        (
            {"name": "m", "image": "r/x:1", "deployment_mode": "RawDeployment"},
            {"rollout": "canary"},
            "Serverless",
        ),
        ({"name": "m"}, {}, "give either image"),
        ({"name": "m", "image": "r/x:1", "model_id": "a/b", "storage_uri": "s3://b"}, {}, "not both"),
        ({"name": "m", "image": "r/x:1", "min_replicas": 3, "max_replicas": 2}, {}, "below min_replicas"),
        ({"name": "Bad_Name", "image": "r/x:1"}, {}, "DNS-1035"),
        ({"name": "m", "image": "r/x:1", "logger": {"mode": "some"}}, {}, "logger.mode"),
        ({"name": "m", "model_format": "huggingface", "storage_uri": "hf://a/b/c"}, {}, "hf://ORG/MODEL"),
    ],
)
def test_invalid_entries_are_refused_with_a_reason(model, settings, message):
    with pytest.raises(AnsibleFilterError, match=message):
        render(model, **settings)


def test_predictor_extra_reaches_the_predictor_and_stays_valid():
    isvc = render(
        {
            "name": "m",
            "image": "r/kserve-ansible-model:1",
            "predictor_extra": {"serviceAccountName": "models", "imagePullSecrets": [{"name": "ghcr"}]},
        }
    )
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "models"
    assert schema_errors(isvc) == []


def test_schema_check_catches_a_misspelt_field():
    isvc = render({"name": "m", "image": "r/kserve-ansible-model:1", "predictor_extra": {"minReplica": 1}})
    assert any("minReplica" in error for error in schema_errors(isvc))


def test_curl_command_uses_the_host_header_through_the_ingress():
    model = {"name": "c", "model_name": "bert-sentiment", "smoke_test": {"protocol": "raw", "body": {"a": 1}}}
    command = filters.inference_service_curl(
        model, "http://c.kserve-test.example.com", {"host": "127.0.0.1", "port": 31080}
    )
    assert command == (
        "curl -s -H 'Host: c.kserve-test.example.com' -H 'Content-Type: application/json' "
        "http://127.0.0.1:31080/v1/models/bert-sentiment:predict -d " + "'" + json.dumps({"a": 1}) + "'"
    )
