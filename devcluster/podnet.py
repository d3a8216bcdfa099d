"""Pod networking of the local cluster: one "node" network namespace per cluster, one per running pod.

Each cluster owns one /16 of 10.64.0.0/10 (claimed in /run/kserve-ansible-net, so clusters that run at the
same time never share addresses). kwok hands out pod IPs from it. The cluster's node namespace
`ksanode<N>` holds the bridge `ksa<N>` with the network's last address (the pods' gateway), the cluster's
kube-proxy (Services' ClusterIPs, in nftables) and CoreDNS (cluster DNS on the gateway address), so two
clusters never share those rules. A veth pair joins it to the host: 10.63.<N>.1 on the host, 10.63.<N>.2 in
the node namespace, and the host routes the pod network there. A pod the pod runner starts gets a network
namespace of its own with eth0 = its pod IP on the bridge.

So the host (kube-apiserver calling webhooks, the ingress stand-in, tests) reaches every pod at its IP, and
pods reach each other, Services by name and ClusterIP, and the API server (at 10.63.<N>.1:443, a forwarder
to its loopback port). Needs root and iproute2's `ip`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import pathlib
import subprocess
from dataclasses import asdict, dataclass

CLAIMS = pathlib.Path("/run/kserve-ansible-net")
FIRST, COUNT = 64, 64  # 10.64.0.0/16 ... 10.127.0.0/16
NETNS_DIR = pathlib.Path("/run/netns")


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class PodNetwork:
    index: int
    bridge: str
    cidr: str
    gateway: str

    @classmethod
    def of(cls, index: int) -> PodNetwork:
        net = ipaddress.ip_network(f"10.{FIRST + index}.0.0/16")
        return cls(index, f"ksa{index}", str(net), str(net.broadcast_address - 1))

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.cidr).prefixlen

    @property
    def pool(self) -> str:
        """kwok's `--cidr`: pod IPs are handed out from its address on (the network's first host)."""
        return f"{ipaddress.ip_network(self.cidr).network_address + 1}/{self.prefix}"

    @property
    def node_netns(self) -> str:
        return f"ksanode{self.index}"

    @property
    def host_ip(self) -> str:
        """The host's end of the link to the node namespace: where pods reach the API server."""
        return f"10.63.{self.index}.1"

    @property
    def node_ip(self) -> str:
        """The node namespace's end: where the host reaches kube-proxy's and CoreDNS's health ports."""
        return f"10.63.{self.index}.2"

    def netns_prefix(self) -> str:
        return f"ksa{self.index}-"

    def as_dict(self) -> dict:
        return asdict(self)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def claim(state_dir: pathlib.Path) -> PodNetwork:
    """The network of the cluster in `state_dir`: its existing claim, else the first free one."""
    CLAIMS.mkdir(parents=True, exist_ok=True)
    with open(CLAIMS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        owner = str(state_dir.resolve())
        free = None
        for index in range(COUNT):
            path = CLAIMS / str(index)
            try:
                holder = json.loads(path.read_text())["state_dir"]
            except (OSError, ValueError, KeyError):
                holder = None
            if holder == owner:
                return PodNetwork.of(index)
            stale = holder is not None and not (pathlib.Path(holder) / "cluster.json").exists()
            if free is None and (holder is None or stale):
                free = index
        if free is None:
            raise NetworkError(f"all {COUNT} pod networks are claimed (see {CLAIMS})")
        (CLAIMS / str(free)).write_text(json.dumps({"state_dir": owner}))
        return PodNetwork.of(free)


def release(net: PodNetwork, state_dir: pathlib.Path) -> None:
    path = CLAIMS / str(net.index)
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(path.read_text())["state_dir"] == str(state_dir.resolve()):
            path.unlink()


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def ensure_network(net: PodNetwork) -> None:
    """The node namespace with its bridge, the link to the host and the routes (idempotent)."""
    node = net.node_netns
    if not _netns_exists(node):
        ip("netns", "add", node)
    ip("-n", node, "link", "set", "lo", "up")
    if ip("-n", node, "link", "show", net.bridge, check=False).returncode != 0:
        ip("-n", node, "link", "add", net.bridge, "type", "bridge")
    if net.gateway not in ip("-n", node, "-o", "addr", "show", "dev", net.bridge).stdout:
        ip("-n", node, "addr", "add", f"{net.gateway}/{net.prefix}", "dev", net.bridge)
    ip("-n", node, "link", "set", net.bridge, "up")
    host_end, node_end = f"ksa{net.index}h", f"ksa{net.index}n"
    if ip("link", "show", host_end, check=False).returncode != 0:
        ip("link", "add", host_end, "type", "veth", "peer", "name", node_end, "netns", node)
    if net.host_ip not in ip("-o", "addr", "show", "dev", host_end).stdout:
        ip("addr", "add", f"{net.host_ip}/30", "dev", host_end)
    if net.node_ip not in ip("-n", node, "-o", "addr", "show", "dev", node_end).stdout:
        ip("-n", node, "addr", "add", f"{net.node_ip}/30", "dev", node_end)
    ip("link", "set", host_end, "up")
    ip("-n", node, "link", "set", node_end, "up")
    ip("-n", node, "route", "replace", "default", "via", net.host_ip)
    ip("route", "replace", net.cidr, "via", net.node_ip)
    subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)


def delete_network(net: PodNetwork) -> None:
    """Every pod namespace, then the node namespace (its bridge and links go with it, and the host route)."""
    for name in list_netns(net):
        delete_netns(name)
    ip("netns", "del", net.node_netns, check=False)
    ip("link", "del", f"ksa{net.index}h", check=False)
    ip("link", "del", net.bridge, check=False)  # a bridge on the host, from before node namespaces


def list_netns(net: PodNetwork) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(net.netns_prefix()))


def create_netns(net: PodNetwork, name: str, pod_ip: str) -> None:
    """A network namespace `name` with loopback and eth0 = pod_ip on the cluster's bridge (replaces one of
    the same name)."""
    delete_netns(name)
    host_end = "v" + name.replace(net.netns_prefix(), f"{net.index}x")[-13:]
    node = net.node_netns
    ip("netns", "add", name)
    ip("-n", node, "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
    ip("-n", node, "link", "set", host_end, "master", net.bridge)
    ip("-n", node, "link", "set", host_end, "up")
    ip("-n", name, "link", "set", "lo", "up")
    ip("-n", name, "addr", "add", f"{pod_ip}/{net.prefix}", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    ip("-n", name, "route", "add", "default", "via", net.gateway)


def delete_netns(name: str) -> None:
    # Deleting the namespace deletes its veth end, and with it the other end.
    ip("netns", "del", name, check=False)


def resolv_conf(net: PodNetwork, namespace: str) -> str:
    """A pod's /etc/resolv.conf under dnsPolicy ClusterFirst: the cluster's CoreDNS on the gateway."""
    search = f"{namespace}.svc.cluster.local svc.cluster.local cluster.local"
    return f"search {search}\nnameserver {net.gateway}\noptions ndots:5\n"
