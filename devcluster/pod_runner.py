"""The pod runner: the local cluster's kubelet for the pods whose images have a local program.

    python -m devcluster.pod_runner --kubeconfig K --state-dir DIR --api-port P

For each pod bound to a node, once kwok gave it an IP: when every container's image has a local program
(devcluster/programs.yaml: the upstream controllers built by gotools/build.sh, our model server, the
stand-ins) or is a sidecar the pod can do without, the runner starts the programs the way a node would:
in a network namespace of the pod's own with the pod's IP (devcluster/podnet.py), each container in a
private mount namespace with its volumes at their mountPaths (devcluster/podspec.py), with its own
command, args and env. It probes the containers as the pod spec says (startup, readiness, liveness),
restarts what exits (restartPolicy, with CrashLoopBackOff back-off) and writes the pod's status: container
states, restart counts, exit codes, the last lines of a crashed container's log, Ready/ContainersReady.
A pod that is deleted or replaced has its processes stopped (SIGTERM, SIGKILL after the grace period, at
most 10 s) and its namespace removed. Every other pod is left to kwok (Running and Ready, no process).

Pods reach the API server at the gateway of the pod network, port 443 (KUBERNETES_SERVICE_HOST/PORT),
through a forwarder to kube-apiserver's loopback port (its certificate names the gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests
import urllib3
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from devcluster import paths, podnet, podspec, programs
from devcluster.informer import Informer

log = logging.getLogger("pod-runner")
SYNC_SECONDS = 1.0  # how often processes, probes and statuses are looked at
REFRESH_SECONDS = 30.0  # how often ConfigMap/Secret/token volumes are rewritten (a kubelet: ~1 min)
BACKOFF_FIRST, BACKOFF_MAX = 10.0, 300.0  # CrashLoopBackOff, as a kubelet's
MIN_PROBE_TIMEOUT = 3.0  # probe timeouts below this flake on 2 shared cores
STOP_GRACE_MAX = 10.0
LOG_TAIL_LINES = 20


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_key(pod: dict) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]


# ----- probes -------------------------------------------------------------------------------------------
def _port(container: dict, port) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"no container port named {port}")


def probe_once(probe: dict, container: dict, pod_ip: str) -> tuple[bool, str]:
    """One probe: (success, what failed)."""
    timeout = max(float(probe.get("timeoutSeconds", 1)), MIN_PROBE_TIMEOUT)
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = (get.get("scheme") or "HTTP").lower()
            host = get.get("host") or pod_ip
            url = f"{scheme}://{host}:{_port(container, get['port'])}{get.get('path') or '/'}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.34")
            response = requests.get(
                url, headers=headers, timeout=timeout, verify=False, allow_redirects=False
            )
            if 200 <= response.status_code < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {response.status_code}"
        if "tcpSocket" in probe:
            port = _port(container, probe["tcpSocket"]["port"])
            with socket.create_connection((probe["tcpSocket"].get("host") or pod_ip, port), timeout=timeout):
                return True, ""
        if "grpc" in probe:
            with socket.create_connection((pod_ip, int(probe["grpc"]["port"])), timeout=timeout):
                return True, ""
        # exec probes: the command would run in the container's image, which is not here; count as passed.
        return True, ""
    except (OSError, requests.RequestException, ValueError) as error:
        return False, f"Get probe: {type(error).__name__}: {error}"[:300]


@dataclass
class ProbeState:
    spec: dict
    due: float = 0.0
    successes: int = 0
    failures: int = 0
    passed: bool = False

    def record(self, ok: bool, started: float) -> None:
        period = float(self.spec.get("periodSeconds", 10))
        self.due = time.monotonic() + period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold", 1)):
                self.passed = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold", 3)):
                self.passed = False

    def first_due(self, started: float) -> None:
        self.due = started + float(self.spec.get("initialDelaySeconds", 0))
        self.successes = self.failures = 0
        self.passed = False

    @property
    def failed_out(self) -> bool:
        return self.failures >= int(self.spec.get("failureThreshold", 3))


# ----- one container ------------------------------------------------------------------------------------
@dataclass
class Container:
    spec: dict
    init: bool = False
    program: programs.Program | programs.Fake | None = None
    process: subprocess.Popen | None = None
    started_at: str = ""
    started_mono: float = 0.0
    restart_count: int = 0
    last_terminated: dict | None = None
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    next_start: float = 0.0
    backoff: float = BACKOFF_FIRST
    done: bool = False  # an init container that exited 0
    probes: dict[str, ProbeState] = field(default_factory=dict)
    log_path: pathlib.Path | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        if isinstance(self.program, programs.Fake):
            return True
        if not self.running:
            return False
        startup = self.probes.get("startup")
        if startup and not startup.passed:
            return False
        readiness = self.probes.get("readiness")
        return readiness.passed if readiness else True

    def status(self) -> dict:
        state: dict
        if isinstance(self.program, programs.Fake):
            state = {"running": {"startedAt": self.started_at or now_iso()}}
        elif self.running:
            state = {"running": {"startedAt": self.started_at}}
        elif self.done:
            state = {"terminated": self.last_terminated}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"ksa://{self.process.pid}" if self.process else "",
            "ready": self.ready() if not self.init else self.done,
            "started": self.running or isinstance(self.program, programs.Fake),
            "restartCount": self.restart_count,
            "state": state,
        }
        if self.last_terminated and not self.done:
            status["lastState"] = {"terminated": self.last_terminated}
        return status


# ----- one pod ------------------------------------------------------------------------------------------
class RunningPod:
    def __init__(self, runner: PodRunner, pod: dict, plan: list[Container]):
        self.runner = runner
        self.pod = pod
        meta = pod["metadata"]
        self.uid = meta["uid"]
        self.key = pod_key(pod)
        self.ip = pod["status"]["podIP"]
        self.netns = f"{runner.net.netns_prefix()}{self.uid.replace('-', '')[:10]}"
        self.dir = runner.pods_dir / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.init = [c for c in plan if c.init]
        self.containers = [c for c in plan if not c.init]
        self.volume_paths: dict[str, str] = {}
        self.volumes_error: podspec.NotReadyYet | None = None
        self.last_status: str = ""
        self.events: set[str] = set()
        self.refreshed = 0.0

    # -- setup and teardown
    def setup(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        podnet.create_netns(self.runner.net, self.netns, self.ip)
        log.info("pod %s/%s: network namespace %s with IP %s", *self.key, self.netns, self.ip)

    def stop(self) -> None:
        """Stop every container as a kubelet does, all at once: its preStop hook first (Knative's user
        container waits there until queue-proxy has drained), then SIGTERM, SIGKILL after the grace period."""
        grace = min(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), STOP_GRACE_MAX)
        deadline = time.monotonic() + grace
        stoppers = [
            threading.Thread(target=self._stop_container, args=(c, deadline), daemon=True)
            for c in self.init + self.containers
            if c.running
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        podnet.delete_netns(self.netns)
        podspec.remove(self.dir / "volumes")
        log.info("pod %s/%s: stopped", *self.key)

    def _stop_container(self, c: Container, deadline: float) -> None:
        hook = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get("httpGet")
        if hook:
            with contextlib.suppress(requests.RequestException, ValueError):
                host, port = hook.get("host") or self.ip, _port(c.spec, hook["port"])
                url = f"http://{host}:{port}{hook.get('path') or '/'}"
                requests.get(url, timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.process.wait(max(0.0, deadline - time.monotonic()))
        if c.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.process.pid, signal.SIGKILL)
            c.process.wait()

    # -- volumes
    def refresh_volumes(self) -> None:
        sources = self.runner.sources
        paths_: dict[str, str] = {}
        try:
            for volume in self.pod["spec"].get("volumes") or []:
                paths_[volume["name"]] = podspec.materialise(self.pod, volume, self.dir / "volumes", sources)
        except podspec.NotReadyYet as error:
            self.volumes_error = error
            self.event("FailedMount", error.message, "Warning")
            return
        except (ApiException, urllib3.exceptions.HTTPError) as error:  # the API server is down or restarting
            log.warning(
                "pod %s/%s: volumes not refreshed (retrying): %s", *self.key, getattr(error, "reason", error)
            )
            self.volumes_error = self.volumes_error or podspec.NotReadyYet(
                "ContainerCreating", "API unavailable"
            )
            if self.volume_paths:  # what was mounted stays; the containers keep running
                self.volumes_error = None
                self.refreshed = time.monotonic() - REFRESH_SECONDS + 5
            return
        self.volumes_error = None
        self.volume_paths = paths_
        self.refreshed = time.monotonic()

    # -- starting containers
    def base_env(self) -> dict[str, str]:
        net = self.runner.net
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": self.pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": net.host_ip,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": f"tcp://{net.host_ip}:443",
            "KUBERNETES_PORT_443_TCP": f"tcp://{net.host_ip}:443",
            "KUBERNETES_PORT_443_TCP_ADDR": net.host_ip,
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "HOME": "/root",
        }

    def start(self, c: Container) -> None:
        program = c.program
        assert isinstance(program, programs.Program)
        if self.runner.model_dir in program.mounts.values() and not self.runner.model_ready():
            c.waiting = ("ContainerCreating", "the image's model (the local tiny model) is being made")
            return
        try:
            env = podspec.container_env(self.pod, c.spec, self.runner.sources, self.base_env())
        except podspec.NotReadyYet as error:
            c.waiting = (error.reason, error.message)
            self.event("Failed", f"Error: {error.message}", "Warning", c.name)
            return
        except (ApiException, urllib3.exceptions.HTTPError) as error:  # the API server is down: next sync
            log.warning("pod %s/%s: env of %s not read (retrying): %s", *self.key, c.name, error)
            return
        env.update(program.env)
        env["PYTHONUNBUFFERED"] = "1"
        if program.standin:
            env["KSA_STANDIN_KUBECONFIG"] = str(self.runner.standin_kubeconfig)
            env["KSA_POD"] = json.dumps(self.pod)
            env["KSA_CONTAINER"] = c.name
        argv = podspec.command_line(program.argv, env)
        foreign = self.runner.foreign_image(program.image, self.pod["spec"].get("nodeName", ""))
        if foreign:  # an image for another architecture than the node's: what its exec would say
            argv = ["sh", "-c", f'echo "{foreign}" >&2; exit 255']
        mounts = podspec.mounts(c.spec, self.volume_paths)
        mounts += [[source, target, True] for target, source in program.mounts.items() if source]
        if self.pod["spec"].get("dnsPolicy", "ClusterFirst") == "ClusterFirst":
            resolv = self.dir / "resolv.conf"
            resolv.write_text(podnet.resolv_conf(self.runner.net, self.key[0]))
            mounts.append([str(resolv), "/etc/resolv.conf", True])
        spec_path = self.dir / f"{c.name}.json"
        spec_path.write_text(
            json.dumps({"argv": argv, "env": env, "cwd": c.spec.get("workingDir"), "mounts": mounts})
        )
        c.log_path = self.dir / "logs" / f"{c.name}.log"
        command = ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private"]
        command += [sys.executable, "-m", "devcluster.podinit", str(spec_path)]
        with open(c.log_path, "ab") as out:
            out.write(f"--- {now_iso()} starting {' '.join(argv)}\n".encode())
            out.flush()
            c.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={"PYTHONPATH": str(paths.REPO_ROOT), "PATH": os.environ.get("PATH", "")},
                cwd=str(paths.REPO_ROOT),
            )
        c.started_at, c.started_mono, c.waiting = now_iso(), time.monotonic(), None
        for kind in ("startup", "readiness", "liveness"):
            if c.spec.get(f"{kind}Probe"):
                c.probes.setdefault(kind, ProbeState(c.spec[f"{kind}Probe"])).first_due(c.started_mono)
        log.info(
            "pod %s/%s: container %s started (pid %d): %s", *self.key, c.name, c.process.pid, " ".join(argv)
        )
        self.event("Started", f"Started container {c.name}", "Normal", c.name)

    def log_tail(self, c: Container) -> str:
        try:
            lines = c.log_path.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return ""
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def exited(self, c: Container) -> None:
        code = c.process.returncode
        if code < 0:  # killed by a signal: what a container runtime reports
            code = 128 - code
        c.last_terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now_iso(),
            "containerID": f"ksa://{c.process.pid}",
        }
        if code != 0:
            c.last_terminated["message"] = self.log_tail(c)
        c.process = None
        c.probes.clear()
        if c.init and code == 0:
            c.done = True
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            c.done = not c.init
            return
        ran = time.monotonic() - c.started_mono
        c.backoff = BACKOFF_FIRST if ran > 600 else c.backoff
        c.next_start = time.monotonic() + c.backoff
        meta = self.pod["metadata"]
        ref = f"{meta['name']}_{meta['namespace']}({meta['uid']})"
        c.waiting = (
            "CrashLoopBackOff",
            f"back-off {c.backoff:.0f}s restarting failed container={c.name} pod={ref}",
        )
        self.event(
            "BackOff", f"Back-off restarting failed container {c.name} in pod {ref}", "Warning", c.name
        )
        log.warning(
            "pod %s/%s: container %s exited with code %d; restart in %.0fs",
            *self.key,
            c.name,
            code,
            c.backoff,
        )
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def kill(self, c: Container, why: str) -> None:
        self.event("Killing", f"Container {c.name} {why}, will be restarted", "Normal", c.name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.process.wait(STOP_GRACE_MAX)
        if c.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.process.pid, signal.SIGKILL)
            c.process.wait()

    # -- the periodic sync
    def sync(self) -> None:
        if self.volumes_error is not None or time.monotonic() - self.refreshed > REFRESH_SECONDS:
            self.refresh_volumes()
        if self.volumes_error is None:
            self._containers()
        self.write_status()

    def _containers(self) -> None:
        now = time.monotonic()
        for c in self.init:
            if c.done:
                continue
            if c.running:
                return  # init containers run one at a time
            if c.process is not None:
                self.exited(c)
                if c.done:
                    continue
            if not isinstance(c.program, programs.Program):
                c.done = True  # no local program (e.g. a storage initializer): taken as completed
                c.last_terminated = {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": now_iso(),
                    "finishedAt": now_iso(),
                }
                continue
            if now >= c.next_start:
                self.start(c)
            return
        for c in self.containers:
            if not isinstance(c.program, programs.Program) or c.done:
                continue
            if c.process is not None and c.process.poll() is not None:
                self.exited(c)
            if c.process is None:
                if now >= c.next_start and not c.done:
                    self.start(c)
                continue
            self._probe(c, now)

    def _probe(self, c: Container, now: float) -> None:
        for kind in ("startup", "readiness", "liveness"):
            state = c.probes.get(kind)
            if state is None or now < state.due:
                continue
            startup = c.probes.get("startup")
            if kind != "startup" and startup and not startup.passed:
                continue
            if kind == "startup" and state.passed:
                continue
            ok, why = probe_once(state.spec, c.spec, self.ip)
            was = state.passed
            state.record(ok, c.started_mono)
            if not ok and (was or state.failures == 1):
                self.event("Unhealthy", f"{kind.capitalize()} probe failed: {why}", "Warning", c.name)
            if kind in ("liveness", "startup") and state.failed_out:
                self.kill(c, f"failed {kind} probe")
                return

    def write_status(self) -> None:
        containers = [c.status() for c in self.containers]
        ready = all(s["ready"] for s in containers) and all(c.done for c in self.init)
        unready = [s["name"] for s in containers if not s["ready"]]
        conditions = []
        for type_ in ("ContainersReady", "Ready"):
            condition = {"type": type_, "status": "True" if ready else "False"}
            if not ready:
                condition.update(
                    reason="ContainersNotReady",
                    message=f"containers with unready status: [{' '.join(unready)}]",
                )
            else:
                condition.update(reason=None, message=None)
            conditions.append(condition)
        initialized = all(c.done for c in self.init)
        conditions.append({"type": "Initialized", "status": "True" if initialized else "False"})
        status = {"phase": "Running", "conditions": conditions, "containerStatuses": containers}
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        fingerprint = json.dumps(status, sort_keys=True)
        current = self.runner.current(self.key)
        if fingerprint == self.last_status and current is not None and _conditions_agree(current, ready):
            return
        stamp = now_iso()
        for condition in conditions:
            condition["lastTransitionTime"] = stamp
            condition["lastProbeTime"] = None
        try:
            self.runner.core.patch_namespaced_pod_status(*reversed(self.key), {"status": status})
            self.last_status = fingerprint
        except ApiException as error:
            if error.status != 404:
                log.warning("pod %s/%s: status not written: %s", *self.key, error.reason)
        except Exception as error:  # the API server is down: written again on a later sync
            log.debug("pod %s/%s: status not written: %s", *self.key, error)

    def event(self, reason: str, message: str, type_: str, container: str | None = None) -> None:
        key = f"{reason}/{container}/{message}"
        if key in self.events:
            return
        self.events.add(key)
        meta = self.pod["metadata"]
        body = kubelet_event(self.pod, reason, message, type_, container)
        with contextlib.suppress(Exception):
            self.runner.core.create_namespaced_event(meta["namespace"], body)


def kubelet_event(pod: dict, reason: str, message: str, type_: str, container: str | None = None) -> dict:
    """An Event about a pod (or one of its containers) as a kubelet reports it."""
    meta = pod["metadata"]
    stamp = now_iso()
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            **({"fieldPath": f"spec.containers{{{container}}}"} if container else {}),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _conditions_agree(pod: dict, ready: bool) -> bool:
    """The stored Ready condition says what we last wrote (the node controller or kwok may change it)."""
    want = "True" if ready else "False"
    conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
    return conditions.get("Ready") == want and conditions.get("ContainersReady") == want


# ----- planning: which pods are ours ------------------------------------------------------------------
def plan(pod: dict, model_dir: str) -> list[Container] | None:
    """The containers of a pod we run (None: the pod has an image with no local program: kwok's)."""
    result = []
    real = False
    for init, specs in ((True, pod["spec"].get("initContainers") or []), (False, pod["spec"]["containers"])):
        for spec in specs:
            container = Container(spec, init=init)
            try:
                container.program = programs.resolve(spec, model_dir=model_dir)
            except programs.ImageError as error:
                container.program = programs.Program(spec.get("image", ""), [])
                container.waiting = ("ErrImagePull", str(error))
                container.next_start = float("inf")
            if container.program is None and not init:
                return None
            real = real or (isinstance(container.program, programs.Program) and not init)
            result.append(container)
    return result if real else None


# ----- the runner ---------------------------------------------------------------------------------------
class PodRunner:
    def __init__(self, api: client.ApiClient, state_dir: pathlib.Path, net: podnet.PodNetwork, api_port: int):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.state_dir = state_dir
        self.net = net
        self.api_port = api_port
        self.pods_dir = state_dir / "pods"
        self.standin_kubeconfig = state_dir / "pki" / "standin.kubeconfig"
        self.sources = podspec.api_sources(self.core)
        self.model_dir = programs.model_dir_default(state_dir)
        self.running: dict[tuple[str, str], RunningPod] = {}
        self.lock = threading.Lock()
        self.pending: set[tuple[str, str]] = set()
        self.informer = Informer(api, "pods", self.core.list_pod_for_all_namespaces, self._on_pod)
        self._making_model: subprocess.Popen | None = None
        self.node_archs: dict[str, str | None] = {}

    def foreign_image(self, image: str, node_name: str) -> str | None:
        """`exec ...: exec format error` when the image is built for another architecture than the node
        (the conventions of devcluster/kubelet.py), else None."""
        from devcluster.kubelet import exec_format_error, image_arch

        if node_name not in self.node_archs:
            with contextlib.suppress(ApiException):
                node = self.core.read_node(node_name)
                self.node_archs[node_name] = (node.metadata.labels or {}).get("kubernetes.io/arch")
        arch, node_arch = image_arch(image), self.node_archs.get(node_name)
        if arch and node_arch and arch != node_arch:
            return exec_format_error({"command": ["python"]})
        return None

    def model_ready(self) -> bool:
        """The model our model server's image carries here (programs.yaml `mounts: model`): KSA_SIM_MODEL_DIR,
        else a tiny DistilBERT made once by `python -m model.tiny_model` (in the background)."""
        if (pathlib.Path(self.model_dir) / "config.json").exists():
            return True
        if self._making_model is None or self._making_model.poll() not in (None, 0):
            log.info("making the local tiny model in %s", self.model_dir)
            self._making_model = subprocess.Popen(
                [sys.executable, "-m", "model.tiny_model", self.model_dir], cwd=str(paths.REPO_ROOT)
            )
        return False

    def current(self, key: tuple[str, str]) -> dict | None:
        return self.informer.get(*key)

    def _on_pod(self, pod: dict, deleted: bool) -> None:
        with self.lock:
            self.pending.add(pod_key(pod))

    def _want(self, pod: dict | None) -> bool:
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return False
        status = pod.get("status") or {}
        return bool(pod["spec"].get("nodeName") and status.get("podIP")) and status.get("phase") not in (
            "Succeeded",
            "Failed",
        )

    def reconcile(self, key: tuple[str, str]) -> None:
        pod = self.informer.get(*key)
        have = self.running.get(key)
        if have is not None and (pod is None or not self._want(pod) or pod["metadata"]["uid"] != have.uid):
            # In the background: a draining pod must not hold up the status of the others.
            threading.Thread(target=have.stop, name=f"stop-{key[1]}", daemon=True).start()
            del self.running[key]
            have = None
        if have is not None:
            have.pod = pod
            return
        if not self._want(pod):
            return
        containers = plan(pod, self.model_dir)
        if containers is None:
            return
        running = RunningPod(self, pod, containers)
        try:
            running.setup()
        except podnet.NetworkError as error:
            log.error("pod %s/%s: %s", *key, error)
            return
        self.running[key] = running

    def run(self, stop: threading.Event) -> None:
        self._cleanup_leftovers()
        self.informer.start()
        self.informer.synced.wait()
        log.info("pod runner ready: pod network %s on %s", self.net.cidr, self.net.bridge)
        while not stop.is_set():
            with self.lock:
                keys, self.pending = self.pending, set()
            for key in keys:
                try:
                    self.reconcile(key)
                except Exception:
                    log.exception("pod %s/%s: reconcile failed", *key)
            for key, running in list(self.running.items()):
                try:
                    running.sync()
                except Exception:
                    log.exception("pod %s/%s: sync failed", *key)
            stop.wait(SYNC_SECONDS)
        for running in list(self.running.values()):
            running.stop()

    def _cleanup_leftovers(self) -> None:
        """Namespaces (and their processes) of an earlier runner of this cluster that did not stop cleanly."""
        for name in podnet.list_netns(self.net):
            pids = podnet.ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            podnet.delete_netns(name)


class ApiForwarder(threading.Thread):
    """gateway:443 -> 127.0.0.1:api_port, byte for byte (TLS passes through; the API server's certificate
    names the gateway)."""

    def __init__(self, listen: str, api_port: int):
        super().__init__(name="api-forwarder", daemon=True)
        self.listen, self.api_port = listen, api_port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def _pipe(self, reader, writer) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.api_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, self.listen, 443))
        self.ready.set()
        self.loop.run_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=pathlib.Path)
    parser.add_argument("--api-port", required=True, type=int)
    parser.add_argument("--network", required=True, help="the pod network as JSON (cluster.json `network`)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    net = podnet.PodNetwork(**json.loads(args.network))
    podnet.ensure_network(net)
    forwarder = ApiForwarder(net.host_ip, args.api_port)
    forwarder.start()
    forwarder.ready.wait(10)
    runner = PodRunner(
        kube_config.new_client_from_config(config_file=args.kubeconfig), args.state_dir, net, args.api_port
    )
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run(stop)


if __name__ == "__main__":
    main()
