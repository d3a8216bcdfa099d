"""The simulator's kubelet for predictor pods, for the two things kwok cannot know:

- an image built for another architecture than its node's (`kubernetes.io/arch` label) crashes at start
  with `exec ...: exec format error`, exit code 255, then CrashLoopBackOff — what a real kubelet shows;
- a pod whose model server runs as a local process is Ready only when that process answers ready, and
  crashes (exit code + its last log lines as termination message) when the process exits.

kwok has already marked the pod Running (it touches a pod only once, while it has no IP), so these status
patches are not fought over.
"""

from __future__ import annotations

import logging

from kubernetes.client.rest import ApiException

from devcluster import conditions as c
from devcluster.inference_service import CONTAINER, REVISION_LABEL, container_status, pod_condition
from devcluster.predictor import image_arch

log = logging.getLogger("simulator.kubelet")


def exec_format_error(container: dict) -> str:
    command = (container.get("command") or ["python"])[0]
    path = command if command.startswith("/") else f"/usr/local/bin/{command}"
    return f"exec {path}: exec format error"


class PredictorKubelet:
    def __init__(self, sim):
        self.sim = sim
        self._events_sent: set[str] = set()

    def sync(self, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        node_name = pod["spec"].get("nodeName")
        if meta.get("deletionTimestamp") or not node_name or status.get("phase") != "Running":
            return
        container = next((x for x in pod["spec"]["containers"] if x["name"] == CONTAINER), None)
        if container is None:
            return
        node = self.sim.nodes.get("", node_name) or {}
        node_arch = node.get("metadata", {}).get("labels", {}).get("kubernetes.io/arch")
        arch = image_arch(container.get("image", ""), meta.get("annotations") or {})
        local = self.sim.local_predictors.get(meta["namespace"], meta["labels"].get(REVISION_LABEL, ""))
        if arch and node_arch and arch != node_arch:
            self._crashed(pod, container, 255, exec_format_error(container))
        elif local is not None and local.exit_code is not None:
            self._crashed(pod, container, local.exit_code, local.log_tail)
        elif local is not None:
            self._set_ready(pod, local.ready)

    def _set_ready(self, pod: dict, ready: bool) -> None:
        current = pod_condition(pod, "Ready") or {}
        if (current.get("status") == "True") == ready:
            return
        status = c.TRUE if ready else c.FALSE
        reason = "" if ready else "ContainersNotReady"
        message = "" if ready else f"containers with unready status: [{CONTAINER}]"
        statuses = []
        for cs in pod["status"].get("containerStatuses") or []:
            statuses.append({**cs, "ready": ready or cs["name"] != CONTAINER})
        self._patch(
            pod,
            {
                "conditions": [
                    # reason/message None: removed from the condition when it turns True
                    {"type": t, "status": status, "reason": reason or None, "message": message or None}
                    | {"lastTransitionTime": c.now_iso()}
                    for t in ("Ready", "ContainersReady")
                ],
                "containerStatuses": statuses,
            },
        )

    def _crashed(self, pod: dict, container: dict, exit_code: int, message: str) -> None:
        current = container_status(pod) or {}
        if ((current.get("lastState") or {}).get("terminated") or {}).get("exitCode") == exit_code:
            return
        meta = pod["metadata"]
        now = c.now_iso()
        pod_ref = f"{meta['name']}_{meta['namespace']}({meta['uid']})"
        statuses = [
            {
                "name": CONTAINER,
                "image": container.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 1,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 10s restarting failed container={CONTAINER} pod={pod_ref}",
                    }
                },
                "lastState": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Error",
                        "message": message,
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
        ]
        statuses += [
            {**cs, "ready": False}
            for cs in pod["status"].get("containerStatuses") or []
            if cs["name"] != CONTAINER
        ]
        unready = f"containers with unready status: [{CONTAINER}]"
        self._patch(
            pod,
            {
                "conditions": [
                    {**c.condition(t, c.FALSE, "ContainersNotReady", unready), "lastTransitionTime": now}
                    for t in ("Ready", "ContainersReady")
                ],
                "containerStatuses": statuses,
            },
        )
        self._event(pod, f"Back-off restarting failed container {CONTAINER} in pod {pod_ref}")

    def _patch(self, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        try:
            self.sim.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        except ApiException as error:
            if error.status != 404:
                raise

    def _event(self, pod: dict, message: str) -> None:
        meta = pod["metadata"]
        if meta["uid"] in self._events_sent:
            return
        self._events_sent.add(meta["uid"])
        now = c.now_iso()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
                "fieldPath": f"spec.containers{{{CONTAINER}}}",
            },
            "reason": "BackOff",
            "message": message,
            "type": "Warning",
            "source": {"component": "kubelet", "host": pod["spec"]["nodeName"]},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.sim.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as error:
            log.warning("event for %s: %s", meta["name"], error.reason)
