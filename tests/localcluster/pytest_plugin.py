"""pytest fixtures for the local control plane.

`local_cluster` (session scope): a running cluster. A cluster that is already up (`make cluster-up`) is
reused and left running; otherwise one is started for the session and stopped at its end. Tests that use
it carry `@pytest.mark.cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.localcluster.cluster import LocalCluster


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
