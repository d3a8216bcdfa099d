"""The simulator's fake kubelet: which containers of a kwok pod crash with `exec format error`."""

from __future__ import annotations

import pytest

from devcluster.kubelet import IMAGE_ARCH_ANNOTATION, exec_format_error, foreign_containers, image_arch
from devcluster.pod_runner import plan

QUEUE = "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:1"


def pod(*images: str, annotations: dict | None = None) -> dict:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {"metadata": {"name": "p", "annotations": annotations or {}}, "spec": {"containers": containers}}


@pytest.mark.parametrize(
    ("image", "arch"),
    [
        ("arm64v8/python:3.11", "arm64"),
        ("docker.io/amd64/busybox", "amd64"),
        ("example.com/model:1.0-arm64", "arm64"),
        ("example.com/model:1.0-aarch64@sha256:1", "arm64"),
        ("kserve/huggingfaceserver:v0.14.1", "amd64"),
        ("docker.io/kserve/huggingfaceserver:v0.14.1", "amd64"),
        ("kserve/sklearnserver:v0.14.1", None),
        ("localhost:5000/model", None),
    ],
)
def test_image_architecture_from_its_reference(image, arch):
    assert image_arch(image) == arch


def test_other_architecture_containers_crash_on_the_node():
    mixed = pod("kserve/huggingfaceserver:v0.14.1", "kserve/sklearnserver:v0.14.1", "example.com/x:1-arm64")
    assert [c["name"] for c in foreign_containers(mixed, "arm64")] == ["c0"]
    assert [c["name"] for c in foreign_containers(mixed, "amd64")] == ["c2"]
    assert foreign_containers(mixed, None) == []


def test_the_pod_annotation_speaks_for_images_without_a_local_program():
    annotated = pod("kserve/sklearnserver:v0.14.1", QUEUE, annotations={IMAGE_ARCH_ANNOTATION: "arm64v8"})
    assert [c["name"] for c in foreign_containers(annotated, "amd64")] == ["c0"]
    assert foreign_containers(annotated, "arm64") == []


def test_the_message_names_the_containers_command():
    assert exec_format_error({}) == "exec /usr/local/bin/python: exec format error"
    assert exec_format_error({"command": ["/bin/sh", "-c"]}) == "exec /bin/sh: exec format error"


def test_a_pod_with_an_image_without_program_is_left_to_kwok_and_this_kubelet():
    assert plan(pod("kserve/huggingfaceserver:v0.14.1", QUEUE), "") is None
