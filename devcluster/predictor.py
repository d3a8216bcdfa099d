"""What KServe 0.14 would run for an InferenceService's predictor: runtime selection, the merged
`kserve-container`, the storage-initializer, and the simulator's conventions about images.

Conventions (documented in README.md):
- our own model server: an image whose name contains `kserve-ansible-model` or `custom-transformers`;
- an image's architecture: the ISVC annotation `simulator.kserve-ansible.io/image-arch`, else an
  architecture named in the image (`arm64v8/`, `amd64/` namespaces or a `-arm64`/`-amd64` tag suffix), else
  the known single-architecture images below; any other image runs on every architecture.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field

OUR_MODEL_IMAGES = ("kserve-ansible-model", "custom-transformers")
IMAGE_ARCH_ANNOTATION = "simulator.kserve-ansible.io/image-arch"
MODEL_DIR_ANNOTATION = "simulator.kserve-ansible.io/model-dir"
# Images published for one architecture only (KServe 0.14.1's Hugging Face runtime is amd64-only).
SINGLE_ARCH_IMAGES = {"kserve/huggingfaceserver": "amd64"}
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.14.1"
QUEUE_PROXY_IMAGE = "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.16.0"
ARCH_NAMES = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "arm64v8": "arm64", "aarch64": "arm64"}


class InvalidSpec(Exception):
    """KServe cannot build a predictor: reason is a KServe FailureReason, message its text."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Predictor:
    """The pod KServe would create for the predictor, plus what the simulator needs to know about it."""

    container: dict
    init_containers: list[dict] = field(default_factory=list)
    pod_fields: dict = field(default_factory=dict)
    replicas: int = 1
    runtime: str | None = None
    cluster_runtime: str | None = None

    @property
    def image(self) -> str:
        return self.container.get("image", "")

    def spec_hash(self) -> str:
        """Identity of a Knative revision: a change to any of these creates a new one."""
        body = [self.container, self.init_containers, self.pod_fields]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def is_our_model_server(image: str) -> bool:
    return any(marker in image for marker in OUR_MODEL_IMAGES)


def image_arch(image: str, annotations: dict | None = None) -> str | None:
    """The one architecture an image is built for, or None when it runs everywhere."""
    if annotations and annotations.get(IMAGE_ARCH_ANNOTATION):
        return ARCH_NAMES.get(annotations[IMAGE_ARCH_ANNOTATION], annotations[IMAGE_ARCH_ANNOTATION])
    image = image.split("@", 1)[0]
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    for part in name.split("/")[:-1]:
        if part in ARCH_NAMES:
            return ARCH_NAMES[part]
    suffix = re.search(r"-(amd64|arm64|x86_64|aarch64)$", tag)
    if suffix:
        return ARCH_NAMES[suffix.group(1)]
    for known, arch in SINGLE_ARCH_IMAGES.items():
        if name == known or name.endswith("/" + known):
            return arch
    return None


def _supports(runtime_spec: dict, model_format: dict) -> bool:
    wanted = model_format.get("name", "").lower()
    version = model_format.get("version")
    for supported in runtime_spec.get("supportedModelFormats", []):
        if supported.get("name", "").lower() == wanted and (
            not version or not supported.get("version") or str(supported["version"]).startswith(str(version))
        ):
            return True
    return False


def select_runtime(model: dict, namespace: str, runtimes: list[dict], cluster_runtimes: list[dict]):
    """(runtime object, is_cluster_runtime) for a `predictor.model`, as KServe chooses it."""
    fmt = model.get("modelFormat", {})
    named = model.get("runtime")
    if named:
        found = [(r, False) for r in runtimes if r["metadata"]["name"] == named]
        found += [(r, True) for r in cluster_runtimes if r["metadata"]["name"] == named]
        if not found:
            raise InvalidSpec("RuntimeNotRecognized", "Waiting for runtime to become available")
        runtime, is_cluster = found[0]
        if runtime["spec"].get("disabled"):
            raise InvalidSpec("RuntimeDisabled", "Specified runtime is disabled")
        if not _supports(runtime["spec"], fmt):
            raise InvalidSpec(
                "NoSupportingRuntime",
                f"Specified runtime does not support specified framework/version: {fmt.get('name')}",
            )
        return runtime, is_cluster
    candidates = [(r, False) for r in runtimes] + [(r, True) for r in cluster_runtimes]
    candidates = [
        (r, c)
        for r, c in candidates
        if not r["spec"].get("disabled")
        and _supports(r["spec"], fmt)
        and any(s.get("autoSelect") for s in r["spec"].get("supportedModelFormats", []))
    ]
    if not candidates:
        raise InvalidSpec("NoSupportingRuntime", "No runtime found to support specified framework/version")

    def priority(item):
        runtime, is_cluster = item
        for s in runtime["spec"].get("supportedModelFormats", []):
            if s.get("name", "").lower() == fmt.get("name", "").lower():
                return (is_cluster, -int(s.get("priority", 0)))
        return (is_cluster, 0)

    return sorted(candidates, key=priority)[0]


def _merge_env(base: list[dict], extra: list[dict]) -> list[dict]:
    merged = {e["name"]: e for e in base}
    merged.update({e["name"]: e for e in extra})
    return list(merged.values())


def build_predictor(isvc: dict, runtimes: list[dict], cluster_runtimes: list[dict]) -> Predictor:
    """The predictor's pod for an InferenceService, or InvalidSpec like the KServe controller."""
    name = isvc["metadata"]["name"]
    spec = isvc["spec"].get("predictor", {})
    pod_fields = {
        k: spec[k]
        for k in (
            "nodeSelector",
            "tolerations",
            "affinity",
            "serviceAccountName",
            "imagePullSecrets",
            "volumes",
        )
        if k in spec
    }
    replicas = max(1, int(spec.get("minReplicas") or 1))
    model = spec.get("model")
    if model:
        runtime, is_cluster = select_runtime(model, isvc["metadata"]["namespace"], runtimes, cluster_runtimes)
        container = copy.deepcopy(runtime["spec"]["containers"][0])
        container["name"] = "kserve-container"
        container["args"] = [
            a.replace("{{.Name}}", name) for a in container.get("args", []) + list(model.get("args", []))
        ]
        container["env"] = _merge_env(container.get("env", []), model.get("env", []))
        if model.get("resources"):
            container["resources"] = model["resources"]
        if model.get("image"):
            container["image"] = model["image"]
        storage_uri = model.get("storageUri")
        runtime_name = runtime["metadata"]["name"]
        for key in ("volumes", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
            if runtime["spec"].get(key) and key not in pod_fields:
                pod_fields[key] = copy.deepcopy(runtime["spec"][key])
    else:
        containers = spec.get("containers") or []
        if not containers:
            raise InvalidSpec("InvalidPredictorSpec", "predictor has neither a model nor containers")
        container = copy.deepcopy(
            next((c for c in containers if c.get("name") == "kserve-container"), containers[0])
        )
        container["name"] = "kserve-container"
        storage_uri = next(
            (e.get("value") for e in container.get("env", []) if e.get("name") == "STORAGE_URI"), None
        )
        runtime_name, is_cluster = None, False
    init = []
    if storage_uri and not storage_uri.startswith("pvc://"):
        # KServe's storage-initializer downloads into an emptyDir that the model server mounts read-only.
        storage_env = [{"name": "STORAGE_URI", "value": storage_uri}]
        container["env"] = _merge_env(container.get("env", []), storage_env)
        mount = {"name": "kserve-provision-location", "mountPath": "/mnt/models"}
        container["volumeMounts"] = [*container.get("volumeMounts", []), {**mount, "readOnly": True}]
        pod_fields["volumes"] = [*pod_fields.get("volumes", []), {"name": mount["name"], "emptyDir": {}}]
        init.append(
            {
                "name": "storage-initializer",
                "image": STORAGE_INITIALIZER_IMAGE,
                "args": [storage_uri, "/mnt/models"],
                "volumeMounts": [mount],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "100Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
            }
        )
    return Predictor(
        container=container,
        init_containers=init,
        pod_fields=pod_fields,
        replicas=replicas,
        runtime=None if is_cluster else runtime_name,
        cluster_runtime=runtime_name if is_cluster else None,
    )


def pod_spec(predictor: Predictor) -> dict:
    """The pod spec of a revision: KServe's container plus Knative's queue-proxy sidecar."""
    container = dict(predictor.container)
    container.setdefault("ports", [{"containerPort": 8080, "name": "user-port", "protocol": "TCP"}])
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    queue_proxy = {
        "name": "queue-proxy",
        "image": QUEUE_PROXY_IMAGE,
        "resources": {"requests": {"cpu": "25m"}},
        "ports": [{"containerPort": 8012, "name": "http1"}],
    }
    spec = {"containers": [container, queue_proxy], **predictor.pod_fields}
    if predictor.init_containers:
        spec["initContainers"] = predictor.init_containers
    return spec
