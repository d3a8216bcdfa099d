"""Start, inspect and stop the local control plane.

Components, in start order: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake nodes
and pod status), the pod runner (devcluster/pod_runner.py: runs the pods whose images have a local program,
e.g. the Knative and KServe controllers and webhooks), kube-proxy and CoreDNS (devcluster/podnet.py) and the
simulator (devcluster/simulator.py: the stand-ins). Each runs detached with its log in
<state dir>/logs; <state dir>/cluster.json remembers ports, pids and paths. `up` is idempotent: a running
cluster is reused, a component that died is reported with its last log lines and started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import platform
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

import requests
import urllib3
import yaml

from devcluster import paths, pki, podnet, programs
from devcluster.processes import Process, free_port, listening_ports

REPO_ROOT = paths.REPO_ROOT
CACHE = paths.cache_dir()
BIN_DIR = paths.bin_dir()
DEFAULT_DOMAIN = "127.0.0.1.sslip.io"
# Room for ~4000 Services: each Serverless InferenceService takes 2-3 ClusterIPs (a /24 was full at ~110).
SERVICE_CIDR = "10.0.0.0/20"
# How long the node lifecycle controller waits for a node's lease or status before it marks the node NotReady
# and its pods Ready=False (Kubernetes' default, stated so tests can outlast it).
NODE_MONITOR_GRACE_SECONDS = 50
KWOK_STAGES = pathlib.Path(__file__).resolve().parent / "kwok-stages.yaml"  # ours, added to kwok's defaults
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "pod-runner",
    "kube-proxy",
    "coredns",
    "simulator",
)


# Cluster DNS for the pods (dnsPolicy ClusterFirst): CoreDNS in the node namespace on the pods' gateway.
COREFILE = """\
.:53 {{
    bind {net.gateway}
    errors
    ready {net.node_ip}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


class ClusterError(RuntimeError):
    """The local cluster cannot start, is broken, or did not stop cleanly."""


def state_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("KSA_CLUSTER_DIR", CACHE / "cluster")).expanduser()


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@dataclass
class NodeShape:
    """The fake nodes: how many and what each one offers (env KSA_CLUSTER_NODES, _NODE_CPU, _NODE_MEMORY,
    _NODE_ARCH override the defaults)."""

    count: int = 3
    cpu: str = "4"
    memory: str = "8Gi"
    arch: str = field(default_factory=host_arch)
    pods: str = "110"

    @classmethod
    def from_env(cls) -> NodeShape:
        shape = cls()
        shape.count = int(os.environ.get("KSA_CLUSTER_NODES", shape.count))
        shape.cpu = os.environ.get("KSA_CLUSTER_NODE_CPU", shape.cpu)
        shape.memory = os.environ.get("KSA_CLUSTER_NODE_MEMORY", shape.memory)
        shape.arch = os.environ.get("KSA_CLUSTER_NODE_ARCH", shape.arch)
        return shape


@dataclass
class ComponentStatus:
    name: str
    state: str  # running | crashed | not started
    pid: int | None
    log: str | None
    log_tail: str = ""


def _binary(name: str) -> str:
    path = BIN_DIR / name
    if not os.access(path, os.X_OK):
        raise ClusterError(
            f"{path} is missing: build the control plane's binaries first "
            "(`make tools` or `bash devcluster/gotools/build.sh`)"
        )
    return str(path)


def kwok_stage_config(directory: pathlib.Path) -> pathlib.Path:
    """kwok's pod stages for `kwok --config`: giving kwok any pod stage replaces its built-in ones, so its
    own defaults are read from the source of the kwok module the binary was built from (the Go module cache
    of devcluster/gotools/build.sh, kwok's `kustomize/stage/pod/fast`) and ours (KWOK_STAGES) follow them.
    Nothing of kwok's is kept in this repository."""
    pins = paths.pins()
    gomod = paths.gomod_dir()
    defaults = gomod / f"sigs.k8s.io/kwok@{pins['KWOK_VERSION']}" / "kustomize" / "stage" / "pod" / "fast"
    try:
        stages = [
            yaml.safe_load((defaults / f"pod-{stage}.yaml").read_text())
            for stage in ("ready", "complete", "delete")
        ]
    except OSError as error:
        raise ClusterError(f"kwok's default pod stages are missing ({error}): run `make tools`") from error
    runner_pod = programs.kwok_runner_query()
    # kwok's pod-ready (Running and Ready at once) only for pods the runner leaves to kwok
    stages[0]["spec"]["selector"]["matchExpressions"].append(
        {"key": runner_pod, "operator": "NotIn", "values": ["true"]}
    )
    ours = [doc for doc in yaml.safe_load_all(KWOK_STAGES.read_text()) if doc]
    for stage in ours:
        for expression in stage["spec"].get("selector", {}).get("matchExpressions", []):
            if expression["key"] == "RUNNER_POD":
                expression["key"] = runner_pod
    path = directory / "kwok-stages.yaml"
    path.write_text(yaml.safe_dump_all([*stages, *ours], sort_keys=False, width=1 << 16))
    return path


class LocalCluster:
    """The local control plane kept in one state directory."""

    def __init__(self, directory: pathlib.Path | None = None):
        self.dir = directory or state_dir()
        self.state_file = self.dir / "cluster.json"
        self.kubeconfig = self.dir / "kubeconfig"
        self.pki_dir = self.dir / "pki"
        self.log_dir = self.dir / "logs"

    # ----- state -------------------------------------------------------------------------------------
    def load(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def _save(self, state: dict) -> None:
        state["pids"] = {name: rec["pid"] for name, rec in state["components"].items()}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _new_state(self, shape: NodeShape) -> dict:
        ports = {
            name: free_port()
            for name in (
                "etcd",
                "etcd_peer",
                "apiserver",
                "controller_manager",
                "scheduler",
                "kwok",
                "ingress",
            )
        }
        return {
            "network": podnet.claim(self.dir).as_dict(),
            "api_url": f"https://127.0.0.1:{ports['apiserver']}",
            "ingress_port": ports["ingress"],
            "domain": os.environ.get("KSA_CLUSTER_DOMAIN", DEFAULT_DOMAIN),
            "kubeconfig": str(self.kubeconfig),
            "ports": ports,
            "nodes": asdict(shape),
            "components": {},
        }

    def components(self, state: dict) -> tuple[str, ...]:
        """The components of this cluster, in start order."""
        return COMPONENTS

    def network(self, state: dict) -> podnet.PodNetwork:
        return podnet.PodNetwork(**state["network"])

    def processes(self, state: dict | None = None) -> dict[str, Process]:
        state = state if state is not None else self.load() or {"components": {}}
        return {name: Process(**rec) for name, rec in state["components"].items()}

    # ----- certificates and kubeconfigs --------------------------------------------------------------
    def _prepare_pki(self, state: dict) -> dict[str, str]:
        """Create (or reuse) the CA, serving and client certificates and each component's kubeconfig."""
        ca = pki.CertificateAuthority(self.pki_dir)
        server = state["api_url"]
        files: dict[str, str] = {"ca": str(ca.cert_path), "ca_key": str(ca.key_path)}
        # The API server's certificate also names the host's end of the pod network, where pods reach it.
        ips = (*pki.API_SERVER_IPS, self.network(state).host_ip)
        crt, key = ca.issue(
            "apiserver", "kube-apiserver", dns_names=pki.API_SERVER_NAMES, ips=ips, server=True
        )
        files.update(apiserver_crt=str(crt), apiserver_key=str(key))
        for name in ("kube-controller-manager", "kube-scheduler"):
            crt, key = ca.issue(
                f"{name}-serving", name, dns_names=("localhost",), ips=("127.0.0.1",), server=True
            )
            files[f"{name}_crt"], files[f"{name}_key"] = str(crt), str(key)
        sa_key, sa_pub = pki.service_account_keys(self.pki_dir)
        files.update(sa_key=str(sa_key), sa_pub=str(sa_pub))
        # Who is who: the admin (system:masters) for users and tests, the built-in identities for the
        # controller-manager and scheduler (bootstrap RBAC covers them), and our two fakes.
        identities = {
            "admin": ("kubernetes-admin", "system:masters"),
            "kube-controller-manager": ("system:kube-controller-manager", None),
            "kube-scheduler": ("system:kube-scheduler", None),
            "kwok": ("kwok", "system:masters"),
            "simulator": ("kserve-ansible-simulator", "system:masters"),
            "pod-runner": ("system:node:kserve-ansible-pod-runner", "system:masters"),
        }
        for name, (user, group) in identities.items():
            crt, key = ca.issue(f"{name}-client", user, group)
            path = self.kubeconfig if name == "admin" else self.pki_dir / f"{name}.kubeconfig"
            pki.write_kubeconfig(path, server, ca, crt, key, user)
            files[f"{name}_kubeconfig"] = str(path)
        # What runs in the pod network reaches the API server through the pod runner's forwarder: the
        # stand-ins (README "Stand-ins", the simulator's identity), kube-proxy and CoreDNS.
        forwarder = f"https://{self.network(state).host_ip}:443"
        inside = {
            "standin": ("simulator-client", "kserve-ansible-simulator", "system:masters"),
            "kube-proxy": ("kube-proxy-client", "system:kube-proxy", None),
            "coredns": ("coredns-client", "system:coredns", "system:masters"),
        }
        for name, (cert, user, group) in inside.items():
            crt, key = ca.issue(cert, user, group)
            path = self.pki_dir / f"{name}.kubeconfig"
            pki.write_kubeconfig(path, forwarder, ca, crt, key, user)
            files[f"{name}_kubeconfig"] = str(path)
        files["admin_crt"] = str(self.pki_dir / "admin-client.crt")
        files["admin_key"] = str(self.pki_dir / "admin-client.key")
        return files

    # ----- component commands ------------------------------------------------------------------------
    def _command(self, name: str, state: dict, files: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        ports = state["ports"]
        if name == "etcd":
            peer = f"http://127.0.0.1:{ports['etcd_peer']}"
            client = f"http://127.0.0.1:{ports['etcd']}"
            return [
                _binary("etcd"),
                "--name=local",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ], {}
        if name == "kube-apiserver":
            return [
                _binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={files['apiserver_crt']}",
                f"--tls-private-key-file={files['apiserver_key']}",
                f"--client-ca-file={files['ca']}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={files['sa_pub']}",
                f"--service-account-signing-key-file={files['sa_key']}",
                # Admission webhooks on (they are by default); a webhook Service is called at one of its
                # endpoints (pod IP:targetPort on the pod network), as for aggregated APIs.
                "--enable-aggregator-routing=true",
                "--profiling=false",
            ], {}
        if name in ("kube-controller-manager", "kube-scheduler"):
            kubeconfig = files[f"{name}_kubeconfig"]
            common = [
                _binary(name),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--tls-cert-file={files[name + '_crt']}",
                f"--tls-private-key-file={files[name + '_key']}",
                "--leader-elect=false",
                "--profiling=false",
            ]
            if name == "kube-scheduler":
                return [*common, f"--secure-port={ports['scheduler']}"], {}
            return [
                *common,
                f"--secure-port={ports['controller_manager']}",
                "--use-service-account-credentials=true",
                f"--node-monitor-grace-period={NODE_MONITOR_GRACE_SECONDS}s",
                f"--service-account-private-key-file={files['sa_key']}",
                f"--root-ca-file={files['ca']}",
                f"--cluster-signing-cert-file={files['ca']}",
                f"--cluster-signing-key-file={files['ca_key']}",
            ], {}
        if name == "kwok":
            key, value = FAKE_NODE_ANNOTATION
            return [
                _binary("kwok"),
                f"--kubeconfig={files['kwok_kubeconfig']}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--cidr={self.network(state).pool}",
                # Node leases renewed every 10 s, as a kubelet does: status-only heartbeats (every 20-45 s)
                # let the node lifecycle controller mark busy nodes NotReady (and their pods unready).
                "--node-lease-duration-seconds=40",
                "--node-ip=127.0.0.1",
                # kwok's default pod stages plus one that gives a pod the node controller marked unready
                # (after an API server or etcd outage) its Ready condition back, as its kubelet would.
                f"--config={kwok_stage_config(self.dir)}",
            ], {}
        if name == "pod-runner":
            return [
                sys.executable,
                "-m",
                "devcluster.pod_runner",
                f"--kubeconfig={files['pod-runner_kubeconfig']}",
                f"--state-dir={self.dir}",
                f"--api-port={ports['apiserver']}",
                f"--network={json.dumps(state['network'])}",
            ], {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        if name == "kube-proxy":
            net = self.network(state)
            return [
                "ip",
                "netns",
                "exec",
                net.node_netns,
                _binary("kube-proxy"),
                f"--kubeconfig={files['kube-proxy_kubeconfig']}",
                "--proxy-mode=nftables",
                "--hostname-override=kwok-node-0",
                f"--cluster-cidr={net.cidr}",
                # Every Service connection leaves through the node namespace, so replies come back that way
                # even between two pods on the bridge.
                "--masquerade-all=true",
                f"--healthz-bind-address={net.node_ip}:10256",
                "--metrics-bind-address=127.0.0.1:10249",
                "--conntrack-max-per-core=0",
            ], {}
        if name == "coredns":
            net = self.network(state)
            corefile = self.dir / "Corefile"
            corefile.write_text(COREFILE.format(net=net, kubeconfig=files["coredns_kubeconfig"]))
            return ["ip", "netns", "exec", net.node_netns, _binary("coredns"), f"-conf={corefile}"], {}
        if name == "simulator":
            return [
                sys.executable,
                "-m",
                "devcluster.simulator",
                f"--kubeconfig={files['simulator_kubeconfig']}",
                f"--ingress-port={ports['ingress']}",
                f"--state-dir={self.dir}",
            ], {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        raise ValueError(name)

    def _ready(self, name: str, state: dict, files: dict[str, str]) -> bool:
        """One readiness probe of a component (False while it is still starting)."""
        ports = state["ports"]
        checks = {
            "etcd": (f"http://127.0.0.1:{ports['etcd']}/health", None, None),
            "kube-apiserver": (
                f"{state['api_url']}/readyz",
                files["ca"],
                (files["admin_crt"], files["admin_key"]),
            ),
            "kube-controller-manager": (
                f"https://127.0.0.1:{ports['controller_manager']}/healthz",
                files["ca"],
                None,
            ),
            "kube-scheduler": (f"https://127.0.0.1:{ports['scheduler']}/healthz", files["ca"], None),
            "kwok": (f"http://127.0.0.1:{ports['kwok']}/healthz", None, None),
            "simulator": (f"http://127.0.0.1:{ports['ingress']}/.simulator/ready", None, None),
        }
        net = self.network(state)
        if name == "pod-runner":  # its API forwarder answers at the host's end of the pod network
            with contextlib.suppress(OSError), socket.create_connection((net.host_ip, 443), 1):
                return True
            return False
        if name in ("kube-proxy", "coredns"):  # health ports at the node namespace's end of the link
            port, path = (10256, "healthz") if name == "kube-proxy" else (8181, "ready")
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"http://{net.node_ip}:{port}/{path}", timeout=2).ok
            return False
        url, verify, cert = checks[name]
        try:
            response = requests.get(url, verify=verify if verify else False, cert=cert, timeout=2)
        except requests.RequestException:
            return False
        if name == "etcd":
            return response.ok and response.json().get("health") == "true"
        return response.ok

    # ----- lifecycle ---------------------------------------------------------------------------------
    def up(self, shape: NodeShape | None = None, report=None, timeout: float = 120.0) -> pathlib.Path:
        """Start what is not running (reusing ports, certificates and data), wait until the cluster
        serves, and return the admin kubeconfig's path."""
        report = report or (lambda msg: print(msg, file=sys.stderr))
        for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
            _binary(binary)
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self.load() or self._new_state(shape or NodeShape.from_env())
        state.setdefault("network", podnet.claim(self.dir).as_dict())  # a cluster made before pod networks
        podnet.ensure_network(self.network(state))
        files = self._prepare_pki(state)
        procs = self.processes(state)
        for name, proc in procs.items():
            if not proc.running():
                report(
                    f"component {name} (pid {proc.pid}) is not running any more (crashed or killed); "
                    f"last lines of {proc.log}:\n{_indent(proc.log_tail())}\nstarting it again"
                )
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        for name in self.components(state):
            proc = procs.get(name)
            if proc is None or not proc.running():
                command, env = self._command(name, state, files)
                proc = Process.start(name, command, self.log_dir / f"{name}.log", env=env, cwd=str(REPO_ROOT))
                state["components"][name] = asdict(proc)
                self._save(state)
                report(f"started {name} (pid {proc.pid})")
            self._wait(proc, lambda n=name: self._ready(n, state, files), timeout, f"{name} ready")
            if name == "kwok":
                self._ensure_nodes(state)
        self._wait_usable(state, timeout)
        return self.kubeconfig

    def _wait(self, proc: Process, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not proc.running():
                tail = _indent(proc.log_tail(30))
                raise ClusterError(f"{proc.name} exited while starting; last lines of {proc.log}:\n{tail}")
            time.sleep(0.25)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; see {proc.log}")

    def api(self):
        """A kubernetes.client.ApiClient for the admin kubeconfig."""
        from kubernetes import config as kube_config

        return kube_config.new_client_from_config(config_file=str(self.kubeconfig))

    def _ensure_nodes(self, state: dict) -> None:
        """Create the fake Node objects that kwok manages (existing ones are kept)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        shape = NodeShape(**state["nodes"])
        core = client.CoreV1Api(self.api())
        existing = {n.metadata.name for n in core.list_node().items}
        for i in range(shape.count):
            name = f"kwok-node-{i}"
            if name in existing:
                continue
            resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods}
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1]},
                    "labels": {
                        "kubernetes.io/arch": shape.arch,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                    },
                },
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "nodeInfo": {
                        "architecture": shape.arch,
                        "operatingSystem": "linux",
                        "kubeletVersion": "v1.34.4",
                        "kubeProxyVersion": "",
                        "containerRuntimeVersion": "kwok",
                        "kernelVersion": "kwok",
                        "osImage": "kwok fake node",
                        "bootID": "",
                        "machineID": "",
                        "systemUUID": "",
                    },
                },
            }
            with contextlib.suppress(ApiException):
                core.create_node(body)

    def _wait_usable(self, state: dict, timeout: float) -> None:
        """Until every fake node is Ready and the default ServiceAccount exists (pods can be created)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api())
        count = state["nodes"]["count"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = [
                n
                for n in core.list_node(label_selector="type=kwok").items
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ]
            try:
                core.read_namespaced_service_account("default", "default")
                has_sa = True
            except ApiException:
                has_sa = False
            if len(ready) >= count and has_sa:
                return
            time.sleep(0.5)
        raise ClusterError(f"timed out waiting for {count} Ready nodes and the default ServiceAccount")

    def status(self) -> list[ComponentStatus]:
        procs = self.processes()
        rows = []
        for name in self.components(self.load() or {}):
            proc = procs.get(name)
            if proc is None:
                rows.append(ComponentStatus(name, "not started", None, None))
            elif proc.running():
                rows.append(ComponentStatus(name, "running", proc.pid, proc.log))
            else:
                rows.append(ComponentStatus(name, "crashed", proc.pid, proc.log, proc.log_tail()))
        return rows

    def down(self, report=None) -> None:
        """Stop every component with its process tree, check that none of our ports still listens, and
        remove the state (logs are kept for post-mortems)."""
        report = report or (lambda msg: print(msg, file=sys.stderr))
        state = self.load()
        if state is None:
            report("local cluster: not running")
            return
        procs = self.processes(state)
        for name in reversed(COMPONENTS):
            if name in procs:
                procs[name].stop()
                report(f"stopped {name}")
        alive = [p.name for p in procs.values() if p.running()]
        deadline = time.monotonic() + 10
        busy = set(state["ports"].values()) & listening_ports()
        while busy and time.monotonic() < deadline:
            time.sleep(0.2)
            busy = set(state["ports"].values()) & listening_ports()
        if alive or busy:
            raise ClusterError(
                f"still running after stop: components {alive}, listening ports {sorted(busy)}"
            )
        if "network" in state:  # pod namespaces, the bridge and the network's claim
            podnet.delete_network(self.network(state))
            podnet.release(self.network(state), self.dir)
        for item in ("etcd", "pki", "pods"):
            shutil.rmtree(self.dir / item, ignore_errors=True)
        for item in (self.state_file, self.kubeconfig):
            item.unlink(missing_ok=True)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
