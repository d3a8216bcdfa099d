"""The simulator's fake kubelet, for the pods kwok runs (those with an image that has no local program; the
pod runner runs the others and this never touches them): a container whose image is built for another
architecture than its node's (`kubernetes.io/arch` label) crashes at start with `exec ...: exec format
error`, exit code 255, then CrashLoopBackOff and a kubelet `BackOff` event — what a real kubelet shows.

An image's architecture (README "Conventions"): the pod annotation `simulator.kserve-ansible.io/image-arch`
(KServe copies an InferenceService's annotations to its predictor pods) for the containers whose image has
no local program; else an architecture named in the image (`arm64v8/`, `amd64/` namespaces or a
`-arm64`/`-amd64` tag suffix); else the known single-architecture images below; any other image runs on
every architecture.

kwok has already marked the pod Running (it touches a pod only once, while it has no IP), so these status
patches are not fought over.
"""

from __future__ import annotations

import datetime
import logging
import re

from kubernetes.client.rest import ApiException

from devcluster import pod_runner, programs

log = logging.getLogger("simulator.kubelet")
IMAGE_ARCH_ANNOTATION = "simulator.kserve-ansible.io/image-arch"
# Images published for one architecture only (KServe 0.14.1's Hugging Face runtime is amd64-only).
SINGLE_ARCH_IMAGES = {"kserve/huggingfaceserver": "amd64"}
ARCH_NAMES = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "arm64v8": "arm64", "aarch64": "arm64"}
EXIT_CODE = 255


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def container_arch(container: dict, annotations: dict) -> str | None:
    """A container's image architecture; the pod's annotation speaks only for images with no local program
    (those with one, such as Knative's queue-proxy, are the upstream multi-architecture images)."""
    image = container.get("image", "")
    return image_arch(image, annotations if programs.entry_for(image) is None else None)


def exec_format_error(container: dict) -> str:
    command = (container.get("command") or ["python"])[0]
    path = command if command.startswith("/") else f"/usr/local/bin/{command}"
    return f"exec {path}: exec format error"


def foreign_containers(pod: dict, node_arch: str | None) -> list[dict]:
    """The pod's containers whose image cannot run on a node of node_arch."""
    if not node_arch:
        return []
    annotations = pod["metadata"].get("annotations") or {}
    return [
        x for x in pod["spec"]["containers"] if (arch := container_arch(x, annotations)) and arch != node_arch
    ]


class ForeignArchKubelet:
    def __init__(self, core, nodes):
        """core: a CoreV1Api; nodes: an informer of the nodes."""
        self.core = core
        self.nodes = nodes
        self._events_sent: set[tuple[str, str]] = set()

    def sync(self, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        node_name = pod["spec"].get("nodeName")
        if meta.get("deletionTimestamp") or not node_name or status.get("phase") != "Running":
            return
        if pod_runner.plan(pod, "") is not None:  # the pod runner's
            return
        node = self.nodes.get("", node_name) or {}
        node_arch = node.get("metadata", {}).get("labels", {}).get("kubernetes.io/arch")
        crashed = foreign_containers(pod, node_arch)
        if crashed:
            self._crashed(pod, crashed)

    def _crashed(self, pod: dict, crashed: list[dict]) -> None:
        meta = pod["metadata"]
        current = {cs["name"]: cs for cs in pod["status"].get("containerStatuses") or []}
        names = [x["name"] for x in crashed]
        if all(
            (((current.get(name) or {}).get("lastState") or {}).get("terminated") or {}).get("exitCode")
            == EXIT_CODE
            for name in names
        ):
            return
        now = now_iso()
        pod_ref = f"{meta['name']}_{meta['namespace']}({meta['uid']})"
        statuses = [
            _crash_status(x, pod_ref, now)
            if x["name"] in names
            else {**current.get(x["name"], {"name": x["name"], "image": x.get("image", "")}), "ready": False}
            for x in pod["spec"]["containers"]
        ]
        unready = f"containers with unready status: [{' '.join(names)}]"
        conditions = [
            {"type": t, "status": "False", "reason": "ContainersNotReady", "message": unready}
            | {"lastTransitionTime": now}
            for t in ("Ready", "ContainersReady")
        ]
        body = {"status": {"conditions": conditions, "containerStatuses": statuses}}
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
        except ApiException as error:
            if error.status != 404:
                raise
            return
        for name in names:
            self._event(pod, name, f"Back-off restarting failed container {name} in pod {pod_ref}")

    def _event(self, pod: dict, container: str, message: str) -> None:
        meta = pod["metadata"]
        if (meta["uid"], container) in self._events_sent:
            return
        self._events_sent.add((meta["uid"], container))
        body = pod_runner.kubelet_event(pod, "BackOff", message, "Warning", container)
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as error:
            log.warning("event for %s: %s", meta["name"], error.reason)


def _crash_status(container: dict, pod_ref: str, now: str) -> dict:
    name = container["name"]
    return {
        "name": name,
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 1,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 10s restarting failed container={name} pod={pod_ref}",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": EXIT_CODE,
                "reason": "Error",
                "message": exec_format_error(container),
                "startedAt": now,
                "finishedAt": now,
            }
        },
    }
