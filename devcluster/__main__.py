"""`python -m devcluster up|down|status|kubeconfig|usage` — the local control plane's command line."""

from __future__ import annotations

import argparse
import sys

from devcluster import usage
from devcluster.cluster import ClusterError, LocalCluster, NodeShape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the cluster (idempotent); prints the kubeconfig path")
    defaults = NodeShape.from_env()
    up.add_argument("--nodes", type=int, default=defaults.count, help="fake nodes (default %(default)s)")
    up.add_argument("--node-cpu", default=defaults.cpu, help="CPU of each node (default %(default)s)")
    up.add_argument(
        "--node-memory", default=defaults.memory, help="memory of each node (default %(default)s)"
    )
    up.add_argument(
        "--node-arch", default=defaults.arch, help="kubernetes.io/arch of the nodes (%(default)s)"
    )
    commands.add_parser("down", help="stop every component and check that nothing is left running")
    commands.add_parser("status", help="each component: running, crashed (with its last log lines)")
    commands.add_parser("kubeconfig", help="print the admin kubeconfig's path (the cluster must be up)")
    cost = commands.add_parser("usage", help="CPU and memory of each component's processes (with its pods)")
    cost.add_argument("--seconds", type=float, default=60, help="interval measured (default %(default)s)")
    args = parser.parse_args(argv)
    cluster = LocalCluster()
    try:
        if args.command == "up":
            shape = NodeShape(args.nodes, args.node_cpu, args.node_memory, args.node_arch)
            print(cluster.up(shape))
        elif args.command == "down":
            cluster.down()
        elif args.command == "status":
            return _print_status(cluster)
        elif args.command == "kubeconfig":
            if cluster.load() is None:
                print("local cluster is not up: run `python -m devcluster up`", file=sys.stderr)
                return 1
            print(cluster.kubeconfig)
        elif args.command == "usage":
            return _print_usage(cluster, args.seconds)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _print_status(cluster: LocalCluster) -> int:
    state = cluster.load()
    if state is None:
        print("local cluster: not started")
        return 3
    print(f"api: {state['api_url']}  ingress: 127.0.0.1:{state['ingress_port']}")
    print(f"kubeconfig: {state['kubeconfig']}")
    broken = 0
    for row in cluster.status():
        print(f"{row.name:<24} {row.state:<12} pid={row.pid}  log={row.log}")
        if row.state != "running":
            broken += 1
            for line in row.log_tail.splitlines():
                print(f"    {line}")
    return 1 if broken else 0


def _print_usage(cluster: LocalCluster, seconds: float) -> int:
    if cluster.load() is None:
        print("local cluster: not started", file=sys.stderr)
        return 3
    roots = {row.name: row.pid for row in cluster.status() if row.state == "running"}
    print(usage.report(usage.measure(roots, seconds), seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
