"""The pod runner's pure parts: which program stands for an image, and what a kubelet makes of a pod spec
(environment, `$(VAR)` expansion, volumes). Specs come from the upstream manifests the roles apply."""

from __future__ import annotations

import base64
import pathlib

import pytest

from devcluster import podspec, programs
from devcluster.pod_runner import plan
from tests.upstream import UPSTREAM_DIR

PINS = {"KNATIVE_SERVING_MODULE_VERSION": "v0.43.0", "KSERVE_VERSION": "v0.14.1"}


def _deployment(path: pathlib.Path, name: str) -> dict:
    import yaml

    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(name)


def _pod(deployment: dict, ip: str = "10.64.0.7") -> dict:
    template = deployment["spec"]["template"]
    return {
        "metadata": {
            "name": f"{deployment['metadata']['name']}-abc",
            "namespace": deployment["metadata"]["namespace"],
            "uid": "0b7c2c7e-1111-2222-3333-444455556666",
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": {**template["spec"], "nodeName": "kwok-node-0"},
        "status": {"podIP": ip, "hostIP": "127.0.0.1", "phase": "Running"},
    }


@pytest.fixture
def bindir(tmp_path):
    for name in ("knative-controller", "knative-webhook", "knative-queue", "kserve-manager", "kserve-agent"):
        version = (
            PINS["KSERVE_VERSION"] if name.startswith("kserve") else PINS["KNATIVE_SERVING_MODULE_VERSION"]
        )
        (tmp_path / f"{name}-{version}").write_text("")
    return tmp_path


def test_images_resolve_to_their_local_programs(bindir):
    knative = _deployment(UPSTREAM_DIR / "knative-serving/1.16.0/serving-core.yaml", "controller")
    container = knative["spec"]["template"]["spec"]["containers"][0]
    program = programs.resolve(container, pins=PINS, bindir=bindir)
    assert program.argv == [str(bindir / "knative-controller-v0.43.0")]

    kserve = _deployment(UPSTREAM_DIR / "kserve/0.14.1/kserve.yaml", "kserve-controller-manager")
    manager, rbac_proxy = kserve["spec"]["template"]["spec"]["containers"]
    program = programs.resolve(manager, pins=PINS, bindir=bindir)
    # The image's /manager is our build; the container's args follow.
    assert program.argv == [
        str(bindir / "kserve-manager-v0.14.1"),
        "--metrics-addr=127.0.0.1:8080",
        "--leader-elect",
    ]
    assert isinstance(programs.resolve(rbac_proxy, pins=PINS, bindir=bindir), programs.Fake)
    assert programs.resolve({"image": "kserve/huggingfaceserver:v0.14.1"}, pins=PINS, bindir=bindir) is None


def test_a_version_that_was_not_built_is_an_image_error(bindir):
    with pytest.raises(
        programs.ImageError, match=r"no local build of kserve-manager v0.15.2.*build.sh kserve"
    ):
        programs.resolve(
            {"image": "kserve/kserve-controller:v0.15.2", "command": ["/manager"]}, pins=PINS, bindir=bindir
        )


def test_image_names_are_normalised():
    assert programs.split_image("kserve/agent:v0.14.1") == ("docker.io/kserve/agent", "v0.14.1")
    assert programs.split_image("index.docker.io/library/busybox") == ("docker.io/busybox", None)
    assert programs.split_image("gcr.io/x/y@sha256:abc") == ("gcr.io/x/y", None)
    assert programs.split_image("localhost:5000/m:1") == ("localhost:5000/m", "1")


def test_a_pod_runs_for_real_only_when_every_container_has_a_program(bindir, monkeypatch):
    monkeypatch.setattr(programs.paths, "bin_dir", lambda: bindir)
    monkeypatch.setattr(programs.paths, "pins", lambda: PINS)
    kserve = _pod(_deployment(UPSTREAM_DIR / "kserve/0.14.1/kserve.yaml", "kserve-controller-manager"))
    assert [c.name for c in plan(kserve, "/models")] == ["manager", "kube-rbac-proxy"]
    hf = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u"},
        "spec": {
            "containers": [
                {"name": "kserve-container", "image": "kserve/huggingfaceserver:v0.14.1"},
                {
                    "name": "queue-proxy",
                    "image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:1",
                },
            ]
        },
    }
    assert plan(hf, "/models") is None  # the runtime image has no program here: kwok's pod


def _sources(config_maps=None, secrets=None):
    config_maps, secrets = config_maps or {}, secrets or {}
    return podspec.Sources(
        lambda ns, name: config_maps.get((ns, name)),
        lambda ns, name: secrets.get((ns, name)),
        lambda pod, source: f"token-for-{pod['metadata']['name']}-{source.get('audience', '')}",
    )


def test_environment_of_the_knative_controller():
    pod = _pod(_deployment(UPSTREAM_DIR / "knative-serving/1.16.0/serving-core.yaml", "controller"))
    env = podspec.container_env(
        pod, pod["spec"]["containers"][0], _sources(), {"KUBERNETES_SERVICE_HOST": "h"}
    )
    assert env["POD_NAME"] == "controller-abc"
    assert env["SYSTEM_NAMESPACE"] == "knative-serving"
    assert env["CONFIG_LOGGING_NAME"] == "config-logging"
    assert env["KUBERNETES_SERVICE_HOST"] == "h"


def test_environment_references_and_expansion():
    pod = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "a"}},
        "spec": {},
        "status": {},
    }
    secret = {"data": {"token": base64.b64encode(b"s3cret").decode()}}
    container = {
        "env": [
            {"name": "A", "value": "one"},
            {"name": "B", "value": "$(A)-two-$$(A)-$(MISSING)"},
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k", "optional": True}}},
        ],
        "resources": {"limits": {"cpu": "1500m"}},
    }
    env = podspec.container_env(pod, container, _sources(secrets={("n", "hf"): secret}), {})
    assert env == {"A": "one", "B": "one-two-$(A)-$(MISSING)", "T": "s3cret", "L": "a", "CPU": "2"}
    with pytest.raises(podspec.NotReadyYet, match='secret "hf" not found'):
        podspec.container_env(pod, container, _sources(), {})


def test_volumes_are_materialised_like_a_kubelet(tmp_path):
    pod = _pod(_deployment(UPSTREAM_DIR / "kserve/0.14.1/kserve.yaml", "kserve-controller-manager"))
    pod["spec"]["volumes"].append(
        {
            "name": "kube-api-access",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                        }
                    },
                ]
            },
        }
    )
    cert = {
        "data": {"tls.crt": base64.b64encode(b"CRT").decode(), "tls.key": base64.b64encode(b"KEY").decode()}
    }
    sources = _sources({("kserve", "kube-root-ca.crt"): {"data": {"ca.crt": "CA"}}}, {})
    cert_volume = pod["spec"]["volumes"][0]
    with pytest.raises(podspec.NotReadyYet, match='secret "kserve-webhook-server-cert" not found'):
        podspec.materialise(pod, cert_volume, tmp_path, sources)  # cert-manager has not issued it yet
    sources = _sources(
        {("kserve", "kube-root-ca.crt"): {"data": {"ca.crt": "CA"}}},
        {("kserve", "kserve-webhook-server-cert"): cert},
    )
    paths = {v["name"]: podspec.materialise(pod, v, tmp_path, sources) for v in pod["spec"]["volumes"]}
    assert (tmp_path / "cert" / "tls.crt").read_bytes() == b"CRT"
    assert (tmp_path / "kube-api-access" / "token").read_text() == "token-for-kserve-controller-manager-abc-"
    assert (tmp_path / "kube-api-access" / "namespace").read_text() == "kserve"
    manager = pod["spec"]["containers"][0]
    assert podspec.mounts(manager, paths) == [[paths["cert"], "/tmp/k8s-webhook-server/serving-certs", True]]


def test_a_stand_in_replaces_the_images_program_whatever_its_command(bindir):
    # KServe's Helm chart runs ModelMesh's controller as `/manager`: its admission stand-in runs instead.
    container = {"image": "kserve/modelmesh-controller:v0.12.0", "command": ["/manager"], "args": ["--x"]}
    program = programs.resolve(container, pins=PINS, bindir=bindir)
    assert program.standin and program.argv[1:] == ["-m", "devcluster.standins.admission"]
