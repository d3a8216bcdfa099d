"""Filters of the models role: one entry of `models_inference_services` -> one InferenceService manifest.

    {{ model | inference_service_manifest(settings) }}
    {{ model | inference_service_curl(url, ingress) }}

`settings` carries the role-wide choices (namespace, KServe version, deployment mode, logger URL, HF token
Secret, rollout, image overrides). Each entry is validated here with messages that name the entry and the
field; the types were already checked by the role's argument spec.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display
from ansible_collections.kserve_ansible.serving.plugins.module_utils import images, releases
from ansible_collections.kserve_ansible.serving.plugins.module_utils.manifests import ManifestError

MANAGED_BY = {"app.kubernetes.io/managed-by": "kserve-ansible"}
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
CONTAINER_MODEL_DIR = "/mnt/models"  # where KServe's storage-initializer puts a storageUri's files
MODEL_SERVER_PORT = 8080  # our model server's --http_port in its image (model/Dockerfile), Knative's port
HF_SCHEME = "hf://"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SERVERLESS = "Serverless"
RAW = "RawDeployment"
_display = Display()


def hf_storage_uri_works(kserve_version: str) -> bool:
    """Whether this KServe release accepts hf:// storageUris (the release catalog's feature hf_storage_uri:
    KServe < 0.15 rejects them, the seed's Troubleshooting #2)."""
    try:
        return releases.has_feature("kserve", str(kserve_version).strip(), "hf_storage_uri")
    except releases.ReleaseError as exc:
        raise AnsibleFilterError(
            f"models: cannot read the KServe version {kserve_version!r} (expected e.g. 0.14.1)"
        ) from exc


def hub_model_from_uri(uri: str) -> tuple[str, str | None]:
    """hf://ORG/MODEL[:REVISION] -> ("ORG/MODEL", REVISION or None)."""
    rest = uri[len(HF_SCHEME) :].strip("/")
    model_id, _sep, revision = rest.partition(":")
    if model_id.count("/") > 1 or not model_id:
        raise AnsibleFilterError(f"{uri!r} is not hf://ORG/MODEL[:REVISION]")
    return model_id, revision or None


class _Entry:
    """One `models_inference_services` entry, with the role's settings as defaults."""

    def __init__(self, model: dict, settings: dict):
        self.model = model
        self.settings = settings
        self.name = model.get("name") or ""
        if not DNS_1035.match(self.name) or len(self.name) > 63:
            raise AnsibleFilterError(
                f"models: InferenceService name {self.name!r} must be a DNS-1035 label "
                "(lowercase letters, digits and '-', starting with a letter, at most 63 characters)"
            )

    def get(self, key: str, default: Any = None) -> Any:
        value = self.model.get(key)
        return default if value is None or value == "" else value

    def fail(self, message: str) -> AnsibleFilterError:
        return AnsibleFilterError(f"models: InferenceService {self.name!r}: {message}")

    @property
    def namespace(self) -> str:
        return self.get("namespace", self.settings["namespace"])

    @property
    def deployment_mode(self) -> str:
        return self.get("deployment_mode", self.settings.get("deployment_mode") or SERVERLESS)

    @property
    def model_name(self) -> str:
        return self.get("model_name", self.name)

    def model_source_args(self) -> tuple[list[str], str | None]:
        """(args naming the model, storageUri) — the hf:// workaround applied when KServe needs it."""
        model_id, storage_uri = self.get("model_id"), self.get("storage_uri")
        if model_id and storage_uri:
            raise self.fail("give model_id (a Hub id the server downloads) or storage_uri, not both")
        revision = self.get("model_revision")
        if storage_uri and storage_uri.startswith(HF_SCHEME):
            version = self.settings["kserve_version"]
            if not hf_storage_uri_works(version):
                model_id, uri_revision = hub_model_from_uri(storage_uri)
                revision = revision or uri_revision
                _display.warning(
                    f"models: {self.name}: storage_uri {storage_uri} is served as --model_id={model_id} "
                    f'instead: KServe {version} rejects hf:// storageUris ("StorageURI not supported", '
                    f"fixed in {releases.CATALOG['kserve'].features['hf_storage_uri']}), so the model server "
                    "downloads the model from the Hub itself."
                )
                storage_uri = None
        args = []
        if model_id:
            args.append(f"--model_id={model_id}")
            if revision:
                args.append(f"--model_revision={revision}")
        elif revision:
            raise self.fail("model_revision needs model_id (or an hf:// storage_uri)")
        return args, storage_uri

    def hf_token_env(self, pulls_from_hub: bool) -> list[dict]:
        secret = self.settings.get("hf_token_secret")
        if not secret or not pulls_from_hub or not self.get("hf_token", True):
            return []
        # optional: public models start without the Secret; gated ones read the token from it.
        ref = {"name": secret, "key": "HF_TOKEN", "optional": True}
        return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}}]


def _predictor_model(entry: _Entry, source_args: list[str], storage_uri: str | None, env: list) -> dict:
    """spec.predictor.model: a KServe runtime (e.g. huggingface) chosen by model format."""
    model = {"modelFormat": {"name": entry.get("model_format")}}
    if entry.get("model_format_version"):
        model["modelFormat"]["version"] = str(entry.get("model_format_version"))
    for key, field in (("runtime", "runtime"), ("protocol_version", "protocolVersion")):
        if entry.get(key):
            model[field] = entry.get(key)
    if storage_uri:
        model["storageUri"] = storage_uri
    model["args"] = [f"--model_name={entry.model_name}", *source_args, *entry.get("args", [])]
    if env:
        model["env"] = env
    if entry.get("resources"):
        model["resources"] = entry.get("resources")
    return model


def _predictor_container(entry: _Entry, source_args: list[str], storage_uri: str | None, env: list) -> dict:
    """spec.predictor.containers[0]: our own model server image (model/)."""
    if storage_uri:  # KServe's storage-initializer fills /mnt/models for a container's STORAGE_URI
        env = [*env, {"name": "STORAGE_URI", "value": storage_uri}]
    model_args = source_args or [f"--model_dir={CONTAINER_MODEL_DIR}"]
    # The container's args replace the image's CMD, --enable_grpc=false included: say it again.
    grpc = f"--enable_grpc={'true' if entry.get('grpc', False) else 'false'}"
    container = {
        "name": "kserve-container",
        "image": entry.get("image"),
        "args": [f"--model_name={entry.model_name}", *model_args, grpc, *entry.get("args", [])],
    }
    if env:
        container["env"] = env
    if entry.get("resources"):
        container["resources"] = entry.get("resources")
    probe = entry.model.get("readiness_probe")  # the entry's own; {} leaves the platform's default
    if probe is None:
        probe = model_server_readiness_probe(entry.model_name)
    if probe:
        container["readinessProbe"] = probe
    return container


def model_server_readiness_probe(model_name: str) -> dict:
    """Ready once the model has loaded: our server listens while it loads and answers 503 on this path
    until then (Knative's default TCP probe would route requests to it). Every 2 s; 3 failures in a row
    (a stuck server) take the pod out of the rotation."""
    return {
        "httpGet": {"path": f"/v1/models/{model_name}", "port": MODEL_SERVER_PORT},
        "periodSeconds": 2,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def _scaling(entry: _Entry) -> dict:
    fields = {
        "min_replicas": "minReplicas",
        "max_replicas": "maxReplicas",
        "scale_target": "scaleTarget",
        "scale_metric": "scaleMetric",
        "container_concurrency": "containerConcurrency",
        "timeout": "timeout",
    }
    out = {field: entry.model[key] for key, field in fields.items() if entry.model.get(key) is not None}
    low, high = out.get("minReplicas"), out.get("maxReplicas")
    if low is not None and high and high < low:
        raise entry.fail(f"max_replicas ({high}) is below min_replicas ({low})")
    return out


def _logger(entry: _Entry) -> dict | None:
    logger = entry.get("logger")
    if not logger:
        return None
    url = logger.get("url") or entry.settings.get("logger_url")
    if not url:
        raise entry.fail("logger needs a url (logger.url or models_logger_url): where the CloudEvents go")
    mode = logger.get("mode") or "all"
    if mode not in ("all", "request", "response"):
        raise entry.fail(f"logger.mode must be all, request or response, not {mode!r}")
    return {"mode": mode, "url": url}


def inference_service_manifest(model: dict, settings: dict) -> dict:
    """The InferenceService (serving.kserve.io/v1beta1) for one `models_inference_services` entry."""
    entry = _Entry(model, settings)
    if bool(entry.get("image")) == bool(entry.get("model_format")):
        raise entry.fail(
            "give either image (our own model server container) or model_format (a KServe serving "
            "runtime such as huggingface), exactly one of them"
        )
    if entry.deployment_mode not in (SERVERLESS, RAW):
        raise entry.fail(f"deployment_mode must be {SERVERLESS} or {RAW}, not {entry.deployment_mode!r}")
    canary = settings.get("rollout") == "canary"
    if canary and entry.deployment_mode == RAW:
        raise entry.fail(
            "models_rollout=canary needs Serverless mode (Knative revisions split the traffic); "
            "RawDeployment has no canaryTrafficPercent. Use models_rollout=direct for this model."
        )
    source_args, storage_uri = entry.model_source_args()
    pulls_from_hub = any(a.startswith("--model_id=") for a in source_args)
    env = [*entry.hf_token_env(pulls_from_hub), *entry.get("env", [])]
    predictor: dict[str, Any] = _scaling(entry)
    for key, field in (("node_selector", "nodeSelector"), ("tolerations", "tolerations")):
        if entry.get(key):
            predictor[field] = entry.get(key)
    logger = _logger(entry)
    if logger:
        predictor["logger"] = logger
    if entry.get("image"):
        predictor["containers"] = [_predictor_container(entry, source_args, storage_uri, env)]
    else:
        predictor["model"] = _predictor_model(entry, source_args, storage_uri, env)
    _merge(predictor, entry.get("predictor_extra", {}))

    annotations = dict(entry.get("annotations", {}))
    if entry.deployment_mode == RAW:
        annotations[DEPLOYMENT_MODE_ANNOTATION] = RAW
    if canary:  # the canary gets its own URL (latest-NAME-predictor...), so it can be probed alone
        annotations[TAG_ROUTING_ANNOTATION] = "true"
    metadata = {
        "name": entry.name,
        "namespace": entry.namespace,
        "labels": {**entry.get("labels", {}), **MANAGED_BY},
    }
    if annotations:
        metadata["annotations"] = {k: str(v) for k, v in annotations.items()}
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }
    try:  # its images (ours, any in predictor_extra) from the user's registry: kserve_ansible_image_overrides
        [manifest] = images.override_images([manifest], settings.get("image_overrides") or {})
    except ManifestError as exc:
        raise entry.fail(str(exc)) from exc
    return manifest


def _merge(base: dict, extra: dict) -> dict:
    """predictor_extra: the user's own predictor fields, merged over the rendered ones (maps recursively)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def inference_service_curl(model: dict, url: str, ingress: dict | None = None) -> str:
    """The curl command a user runs to ask one model what its smoke test asks (Host header with an
    ingress address, the way one reaches KServe without DNS)."""
    smoke = model.get("smoke_test") or {}
    protocol = smoke.get("protocol") or "v1"
    name = model.get("model_name") or model["name"]
    if protocol == "v2":
        path, body = f"/v2/models/{name}/infer", {"inputs": smoke.get("inputs") or []}
    elif protocol == "raw":
        path, body = smoke.get("path") or f"/v1/models/{name}:predict", smoke.get("body")
    else:
        path, body = f"/v1/models/{name}:predict", {"instances": smoke.get("instances") or []}
    scheme, _sep, host = url.partition("://")
    parts = ["curl", "-s"]
    if ingress and ingress.get("host"):
        parts += ["-H", f"Host: {host}"]
        port = ingress.get("port")
        target = f"{ingress.get('scheme') or 'http'}://{ingress['host']}{f':{port}' if port else ''}"
    else:
        target = f"{scheme}://{host}"
    parts += ["-H", "Content-Type: application/json", f"{target}{path}", "-d", json.dumps(body)]
    return shlex.join(parts)


class FilterModule:
    def filters(self):
        return {
            "inference_service_manifest": inference_service_manifest,
            "inference_service_curl": inference_service_curl,
        }
