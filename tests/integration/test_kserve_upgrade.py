"""KServe upgrades with playbooks/upgrade.yml against the real controllers of each release (local cluster).

One ordered story on one cluster (CI time is limited): the platform at KServe 0.14.1 serving the guide's two
InferenceServices; the preview (`--check --diff`) of 0.15.2 names what changes and changes nothing; an
upgrade to a release whose controller cannot start (its image tag has no build here: ErrImagePull) stops,
traffic keeps being served, and the rollback command it prints returns to 0.14.1 with everything Ready; then
0.14.1 -> 0.15.2 -> 0.16.0 while a client sends the guide's request every 100 ms: no request fails, and each
preview named exactly the InferenceServices whose pods were replaced.

The custom model answers real inference (our model server); the Hugging Face runtime has no program here
(its pods are kwok's, nothing answers), so "serving" is sampled for it every 100 ms as: its route sends
traffic only to Ready revisions.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import threading
import time

import pytest
import requests

from devcluster.paths import local_playbook_args
from tests.cluster_plugin import converge_local, wait_for
from tests.helpers import ROOT, recap, run_playbook
from tests.upstream import UPSTREAM_DIR

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "kserve-test"
CUSTOM = "kserve-custom-model-logger"
HF = "huggingface-distilbert"
MODELS = (HF, CUSTOM)
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
BROKEN = "0.15.3"  # a release made in the test from 0.15.2 whose controller image has no build here
FIGURES: dict = {}  # reported in artifacts/kserve_upgrade.json


def upgrade(cluster, *args, mirror=UPSTREAM_DIR, timeout=1800):
    args = local_playbook_args("playbooks/upgrade.yml", *args, mirror=mirror)
    return run_playbook(*args, env={"KSA_CLUSTER_DIR": cluster.state_dir}, timeout=timeout)


def ok(result):
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    return recap(result.stdout)


def previewed(output: str) -> set[str]:
    """The InferenceServices the preview said will have their pods replaced."""
    found = re.search(r"InferenceServices whose pods will be replaced: ([^\"\n]*)", output)
    assert found, output[-6000:]
    names = found.group(1).strip()
    return set() if names == "none" else {name.strip() for name in names.split(",")}


@pytest.fixture(scope="module")
def apis(local_cluster):
    from kubernetes import client

    api = local_cluster.api_client()
    return client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)


@pytest.fixture(scope="module")
def cluster(local_cluster, apis):
    """The platform at KServe 0.14.1 serving the guide's two InferenceServices, as `make demo` leaves it.
    The models are made again by 0.14.1's controller: on a cluster an earlier test left at a newer KServe,
    0.14.1's controller cannot update what 0.16.0's made (Knative's webhook denies its env fieldRefs)."""
    converge_local(local_cluster, "cert_manager,istio,knative,kserve", "-e", "kserve_version=0.14.1")
    converge_local(local_cluster, "models", "-e", "kserve_version=0.14.1", "-e", "models_state=absent")
    converge_local(local_cluster, "models", "-e", "kserve_version=0.14.1")
    yield local_cluster
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "kserve_upgrade.json").write_text(json.dumps(FIGURES, indent=2))


def controller_image(apis) -> str:
    deployment = apis[2].read_namespaced_deployment("kserve-controller-manager", "kserve")
    return next(c.image for c in deployment.spec.template.spec.containers if c.name == "manager")


def served_state(apis) -> dict[str, tuple[str, frozenset]]:
    """Per model: its predictor's latest created revision and the uids of its predictor pods."""
    custom, core, _ = apis
    state = {}
    for name in MODELS:
        isvc = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        revision = isvc["status"]["components"]["predictor"]["latestCreatedRevision"]
        pods = core.list_namespaced_pod(
            NAMESPACE, label_selector=f"serving.kserve.io/inferenceservice={name}"
        )
        uids = frozenset(p.metadata.uid for p in pods.items if not p.metadata.deletion_timestamp)
        state[f"{NAMESPACE}/{name}"] = (revision, uids)
    return state


def replaced(before, after) -> set[str]:
    """Models whose predictor got a new revision or lost any of its pods."""
    return {
        name for name in before if after[name][0] != before[name][0] or not before[name][1] <= after[name][1]
    }


def all_ready(apis) -> bool:
    custom = apis[0]
    for name in MODELS:
        isvc = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        conditions = {c["type"]: c["status"] for c in isvc.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") != "True":
            return False
    return True


class Clients:
    """Every 100 ms: the guide's request to the custom model through the ingress, and the Hugging Face
    model's route checked for traffic on Ready revisions only."""

    def __init__(self, cluster, apis):
        self.url = f"http://127.0.0.1:{cluster.ingress_port}/v1/models/bert-sentiment:predict"
        self.host = f"{CUSTOM}.{NAMESPACE}.{cluster.domain}"
        self.custom = apis[0]
        self.requests: list[tuple[int, str]] = []
        self.routes: list[tuple[bool, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=t, daemon=True) for t in (self._send, self._route)]

    def _send(self):
        while not self._stop.is_set():
            try:
                answer = requests.post(
                    self.url,
                    json={"sequence": "hello I am doing good"},
                    headers={"Host": self.host},
                    timeout=30,
                )
                self.requests.append((answer.status_code, answer.text[:200]))
            except requests.RequestException as error:
                self.requests.append((0, str(error)[:200]))
            self._stop.wait(0.1)

    def _route(self):
        while not self._stop.is_set():
            try:
                isvc = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, HF)
                targets = [
                    t["revisionName"]
                    for t in isvc["status"]["components"]["predictor"]["traffic"]
                    if t["percent"]
                ]
                ready = all(self._revision_ready(name) for name in targets) and bool(targets)
                self.routes.append((ready, ",".join(targets)))
            except Exception as error:  # an API hiccup is a sample that failed, not a test error
                self.routes.append((False, str(error)[:200]))
            self._stop.wait(0.1)

    def _revision_ready(self, name):
        revision = self.custom.get_namespaced_custom_object(
            "serving.knative.dev", "v1", NAMESPACE, "revisions", name
        )
        return any(c["type"] == "Ready" and c["status"] == "True" for c in revision["status"]["conditions"])

    def figures(self):
        failed = [r for r in self.requests if r[0] != 200]
        unready = [r for r in self.routes if not r[0]]
        return {
            "requests": len(self.requests),
            "failed_requests": len(failed),
            "failures": failed[:5],
            "route_samples": len(self.routes),
            "route_samples_not_ready": len(unready),
            "route_failures": unready[:5],
        }

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        wait_for(lambda: self.requests and self.routes, 60, "the first request and route sample")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_the_preview_names_what_changes_and_changes_nothing(cluster, apis):
    before = served_state(apis)
    started = time.monotonic()
    result = upgrade(cluster, "-e", "kserve_version=0.15.2", "--check", "--diff")
    FIGURES["preview_s"] = round(time.monotonic() - started, 1)
    ok(result)
    out = result.stdout
    assert previewed(out) == {f"{NAMESPACE}/{HF}"}
    assert "KServe 0.14.1 -> 0.15.2 (manifests)" in out
    assert "kserve/huggingfaceserver:v0.14.1 -> kserve/huggingfaceserver:v0.15.2" in out
    assert "logger image kserve/agent:v0.14.1 -> kserve/agent:v0.15.2" in out
    assert re.search(r"Objects that change: [1-9]", out), out[-6000:]
    assert "inferenceservices.serving.kserve.io" in out  # the CRD is among them, with its diff
    assert re.search(
        r"To return to 0\.14\.1: ansible-playbook playbooks/upgrade\.yml .*-e kserve_version=0\.14\.1", out
    )
    assert controller_image(apis) == "kserve/kserve-controller:v0.14.1"
    assert served_state(apis) == before


@pytest.fixture
def broken_release(tmp_path):
    """A mirror with every release of ../shared/upstream plus kserve 0.15.3: 0.15.2's files with the
    controller image tagged v0.15.3, which has no build here (the local cluster answers ErrImagePull),
    declared with its sha256 as a user declares another release."""
    mirror = tmp_path / "mirror"
    (mirror / "kserve").mkdir(parents=True)
    for component in UPSTREAM_DIR.iterdir():
        if component.is_dir() and component.name != "kserve":
            (mirror / component.name).symlink_to(component)
    for release in (UPSTREAM_DIR / "kserve").iterdir():
        (mirror / "kserve" / release.name).symlink_to(release)
    (mirror / "kserve" / BROKEN).mkdir()
    pins = {}
    for name in ("kserve.yaml", "kserve-cluster-resources.yaml"):
        text = (UPSTREAM_DIR / "kserve" / "0.15.2" / name).read_text()
        if name == "kserve.yaml":
            assert "kserve/kserve-controller:v0.15.2" in text
            text = text.replace("kserve/kserve-controller:v0.15.2", f"kserve/kserve-controller:v{BROKEN}")
        (mirror / "kserve" / BROKEN / name).write_text(text)
        pins[name] = hashlib.sha256(text.encode()).hexdigest()
    extra = tmp_path / "extra-release.json"
    extra.write_text(json.dumps({"kserve_ansible_extra_releases": {"kserve": {BROKEN: pins}}}))
    return mirror, extra


def test_a_failed_upgrade_stops_keeps_serving_and_its_rollback_command_returns_to_0_14_1(
    cluster, apis, broken_release
):
    mirror, extra = broken_release
    before = served_state(apis)
    with Clients(cluster, apis) as clients:
        result = upgrade(
            cluster,
            "-e",
            f"@{extra}",
            "-e",
            f"kserve_version={BROKEN}",
            "-e",
            "kserve_wait_timeout=60",
            mirror=mirror,
        )
    FIGURES["failed_upgrade"] = clients.figures()
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert f"The upgrade to KServe {BROKEN} stopped at" in out, result.stdout[-6000:]
    assert "kserve-controller-manager" in out  # the Deployment that did not roll out, named
    assert clients.figures()["failed_requests"] == 0, clients.figures()
    assert clients.figures()["route_samples_not_ready"] == 0, clients.figures()
    assert served_state(apis) == before  # nothing served was touched
    command = re.search(
        r"To return to KServe 0\.14\.1, run: (ansible-playbook .*?-e kserve_version=0\.14\.1)", out
    )
    assert command, result.stdout[-6000:]
    args = shlex.split(command.group(1))
    assert args[:2] == ["ansible-playbook", "playbooks/upgrade.yml"]

    started = time.monotonic()
    with Clients(cluster, apis) as clients:
        back = run_playbook(*args[1:], env={"KSA_CLUSTER_DIR": cluster.state_dir}, timeout=1800)
    FIGURES["rollback"] = {**clients.figures(), "wall_s": round(time.monotonic() - started, 1)}
    ok(back)
    assert f"KServe {BROKEN} -> 0.14.1" in back.stdout  # the Deployment asked for the broken release
    assert controller_image(apis) == "kserve/kserve-controller:v0.14.1"
    assert all_ready(apis)
    assert clients.figures()["failed_requests"] == 0, clients.figures()


@pytest.mark.parametrize("target", ["0.15.2", "0.16.0"])
def test_upgrade_serves_throughout_and_restarts_exactly_what_the_preview_named(cluster, apis, target):
    before = served_state(apis)
    started = time.monotonic()
    with Clients(cluster, apis) as clients:
        result = upgrade(cluster, "-e", f"kserve_version={target}")
    wall = round(time.monotonic() - started, 1)
    ok(result)
    after = served_state(apis)
    figures = {**clients.figures(), "wall_s": wall, "previewed": sorted(previewed(result.stdout))}
    figures["replaced"] = sorted(replaced(before, after))
    FIGURES[f"upgrade_to_{target}"] = figures
    print(f"\nupgrade to {target}: {json.dumps(figures)}")
    assert controller_image(apis) == f"kserve/kserve-controller:v{target}"
    assert all_ready(apis)
    assert figures["failed_requests"] == 0, figures
    assert figures["route_samples_not_ready"] == 0, figures
    assert figures["previewed"] == figures["replaced"]
