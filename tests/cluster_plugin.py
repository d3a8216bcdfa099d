"""pytest fixtures for the local control plane.

`local_cluster` (session scope): a running cluster. A cluster that is already up (`make cluster-up`) is
reused and left running; otherwise one is started for the session and stopped at its end. Tests that use
it carry `@pytest.mark.cluster`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from devcluster.cluster import BIN_DIR, REPO_ROOT, LocalCluster


def devcluster_cli(state_dir, *args: str) -> subprocess.CompletedProcess:
    """`python -m devcluster ARGS` on the cluster in `state_dir`, as a user runs it."""
    env = {**os.environ, "KSA_CLUSTER_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "devcluster", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass(frozen=True)
class RunningCluster:
    kubeconfig: str
    api_url: str
    ingress_port: int
    domain: str
    state_dir: str

    def api_client(self):
        """A kubernetes.client.ApiClient authenticated as the cluster admin."""
        from kubernetes import config as kube_config

        return kube_config.new_client_from_config(config_file=self.kubeconfig)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Our kubectl v1.34.4 with the generated kubeconfig."""
        return subprocess.run(
            [str(BIN_DIR / "kubectl"), "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            check=check,
        )


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    """Call check() until it returns something truthy (returned); AssertionError naming `what` after
    timeout seconds, with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def _all_running(cluster: LocalCluster) -> bool:
    return cluster.load() is not None and all(row.state == "running" for row in cluster.status())


@pytest.fixture(scope="session")
def local_cluster():
    cluster = LocalCluster()
    started_here = not _all_running(cluster)
    cluster.up()
    state = cluster.load()
    yield RunningCluster(
        kubeconfig=str(cluster.kubeconfig),
        api_url=state["api_url"],
        ingress_port=int(state["ingress_port"]),
        domain=state["domain"],
        state_dir=str(cluster.dir),
    )
    if started_here:
        cluster.down()
