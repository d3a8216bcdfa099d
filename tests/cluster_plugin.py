"""pytest fixtures for the local control plane.

`local_cluster` (session scope): a running cluster. A cluster that is already up (`make cluster-up`) is
reused and left running; otherwise one is started for the session and stopped at its end. Tests that use
it carry `@pytest.mark.cluster`. `own_cluster` (module scope): a cluster of the module's own, for the
modules marked `private_cluster`, which make test runs beside the session's (tests/run_lanes.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from devcluster.cluster import BIN_DIR, REPO_ROOT, LocalCluster
from devcluster.paths import local_playbook_args


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


def _running(cluster: LocalCluster) -> RunningCluster:
    state = cluster.load()
    return RunningCluster(
        kubeconfig=str(cluster.kubeconfig),
        api_url=state["api_url"],
        ingress_port=int(state["ingress_port"]),
        domain=state["domain"],
        state_dir=str(cluster.dir),
    )


@pytest.fixture(scope="session")
def local_cluster():
    cluster = LocalCluster()
    started_here = not _all_running(cluster)
    cluster.up()
    yield _running(cluster)
    if started_here:
        cluster.down()


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory):
    """A local cluster of the module's own (own state directory and ports), up for the module's tests and
    down after them: for the `private_cluster` modules, which run beside the session's cluster tests."""
    cluster = LocalCluster(tmp_path_factory.mktemp("own-cluster") / "cluster")
    cluster.up()
    try:
        yield _running(cluster)
    finally:
        cluster.down()


# The order of the modules that share the session's cluster, so that each state of it is made once: those
# that need no platform first; then the platform roles' own module (it starts from an uninstalled cluster and
# ends uninstalled); then every module of the `serving_platform` fixture on one converge of it; then the
# modules that converge the whole site and uninstall it; then the KServe upgrade (0.14.1 to 0.16.0). Modules
# not named here (no cluster, or clusters of their own: the private_cluster marker) run first.
CLUSTER_MODULE_ORDER = (
    "test_localcluster",
    "test_force_absent",
    "test_platform_roles",
    "test_collection",
    "test_inference_probe",
    "test_inference_service_wait",
    "test_models_many",
    "test_real_controllers",
    "test_serving_cluster",
    "test_models_role",
    "test_monitoring_role",
    "test_real_controllers_roles",
    "test_kserve_upgrade",
)


def pytest_runtest_setup(item):
    """A test on the session's cluster carries the `cluster` marker: make test's lanes (tests/run_lanes.sh)
    run the others beside them, where a second session cluster in the same directory would break both."""
    uses = {"local_cluster", "serving_platform"} & set(getattr(item, "fixturenames", ()))
    if uses and not item.get_closest_marker("cluster"):
        pytest.fail(f"{item.nodeid} uses {sorted(uses)} without @pytest.mark.cluster", pytrace=False)


def pytest_collection_modifyitems(items):
    """Run the cluster modules in CLUSTER_MODULE_ORDER (a stable sort: tests keep their order in a module)."""
    rank = {name: index + 1 for index, name in enumerate(CLUSTER_MODULE_ORDER)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], 0))


PLATFORM_TAGS = "cert_manager,istio,knative,kserve"
# Deployments whose availability means the platform serves InferenceServices: the KServe controller (and its
# webhooks), Knative's controller, defaulting/validating webhook and autoscaler.
PLATFORM_DEPLOYMENTS = (
    ("kserve", "kserve-controller-manager"),
    ("knative-serving", "controller"),
    ("knative-serving", "webhook"),
    ("knative-serving", "autoscaler"),
)


def _platform_available(cluster: RunningCluster) -> bool:
    from kubernetes import client

    apps = client.AppsV1Api(cluster.api_client())
    for namespace, name in PLATFORM_DEPLOYMENTS:
        try:
            deployment = apps.read_namespaced_deployment(name, namespace)
        except client.ApiException as error:
            if error.status == 404:
                return False
            raise
        conditions = {c.type: c.status for c in deployment.status.conditions or []}
        if conditions.get("Available") != "True":
            return False
    return True


def local_playbook(
    cluster: RunningCluster, path: str, *extra: str, tags: str | None = None, timeout: float = 1800
):
    """`ansible-playbook PATH` against `cluster` with the local cluster's vars file and the upstream mirror,
    as `make demo` runs site.yml; the CompletedProcess (never raises on failure)."""
    from tests.helpers import run_playbook
    from tests.upstream import UPSTREAM_DIR

    args = local_playbook_args(path, *extra, mirror=UPSTREAM_DIR, tags=tags)
    return run_playbook(*args, env={"KSA_CLUSTER_DIR": cluster.state_dir}, timeout=timeout)


def converge_local(cluster: RunningCluster, tags: str, *extra: str, timeout: float = 1200) -> dict:
    """`site.yml --tags TAGS` on the local cluster (local_playbook); asserts success and returns the recap."""
    from tests.helpers import recap

    result = local_playbook(cluster, "site.yml", *extra, tags=tags, timeout=timeout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return recap(result.stdout)


@pytest.fixture(scope="module")
def serving_platform(local_cluster):
    """The serving platform (cert-manager, Istio, Knative Serving, KServe) as the roles install it
    (`site.yml --tags PLATFORM_TAGS -e @inventory/local-cluster.yml`), for tests of what runs on it: only
    the real KServe and Knative controllers give an InferenceService a status. Converged when not all of
    PLATFORM_DEPLOYMENTS are Available (an earlier module may have uninstalled it), then left installed for
    the next module (the modules that need a clean cluster uninstall it first)."""
    if not _platform_available(local_cluster):
        converge_local(local_cluster, PLATFORM_TAGS, timeout=1800)
    return local_cluster
