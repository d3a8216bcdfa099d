"""What the roles must do for a cluster whose KServe and Knative controllers and admission webhooks are real
(issue #13), tested against those webhooks on the local cluster:

- Knative's webhook rejects a Knative Service whose pod template has a nodeSelector while config-features'
  kubernetes.podspec-nodeselector is off, so KServe cannot create the predictor of such an InferenceService;
  the models role turns on the flags its models need, and that model then gets Ready.
- Applying an InferenceService while KServe's webhook does not serve yet (as right after KServe is installed)
  succeeds through the models role's retry, and fails at once with the API server's message without it.
  The webhook is made not to serve deterministically: its Service selects no pod for a while and its pod
  is replaced (so no connection the API server opened before survives; the API server then answers
  `failed calling webhook ... no endpoints available`), and serves again once the playbook has printed its
  first retry.
- A real rejection by KServe's webhook fails the models role at once (no retry).

Needs the real controllers and webhook admission on in the local cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils import webhooks

from devcluster.paths import local_playbook_args
from tests.cluster_plugin import local_playbook, wait_for
from tests.helpers import BIN, ROOT, recap
from tests.upstream import UPSTREAM_DIR, default_release_path

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "kserve-test"
CUSTOM = "kserve-custom-model-logger"
FLAG = "kubernetes.podspec-nodeselector"
ON_LINUX_NODES = {"kubernetes.io/os": "linux"}
KSERVE_WEBHOOK = ("kserve", "kserve-webhook-server-service")
NO_POD = {"kserve-ansible-test": "selects-no-pod"}
RACE = "webhook-race"


def playbook(cluster, *args, tags=None, path="site.yml"):
    return local_playbook(cluster, path, *args, tags=tags)


def ok(result):
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return recap(result.stdout)


def models_vars(tmp_path, name=CUSTOM, **change) -> str:
    """A vars file serving only the custom model (from the role's defaults) as `name`, changed as given."""
    defaults = yaml.safe_load((ROOT / "roles/models/defaults/main.yml").read_text())
    entry = next(e for e in defaults["models_inference_services"] if e["name"] == CUSTOM)
    entry = {**entry, "name": name, **change}
    path = tmp_path / f"models-{name}.yml"
    path.write_text(yaml.safe_dump({"models_inference_services": [entry]}))
    return f"@{path}"


def get(cluster, *args) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def config_features(cluster) -> dict:
    return get(cluster, "configmap", "config-features", "-n", "knative-serving")


def turn_flag_off(cluster):
    if FLAG in (config_features(cluster).get("data") or {}):
        patch = json.dumps([{"op": "remove", "path": f"/data/{FLAG}"}])
        cluster.kubectl(
            "patch", "configmap", "config-features", "-n", "knative-serving", "--type=json", "-p", patch
        )


def knative_service(name, node_selector=None) -> str:
    spec = {"containers": [{"image": "ghcr.io/kserve-ansible/kserve-ansible-model:0.1.0"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return json.dumps(
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"template": {"spec": spec}},
        }
    )


def dry_run_create(cluster, manifest) -> subprocess.CompletedProcess:
    """A server-side dry run: the API server sends it through the admission webhooks, stores nothing."""
    return cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=manifest, check=False)


@pytest.fixture(scope="module")
def cluster(local_cluster):
    return local_cluster


@pytest.fixture(scope="module")
def platform(cluster, tmp_path_factory):
    """The platform with only the custom model served; uninstalled again afterwards."""
    ok(playbook(cluster, "-e", models_vars(tmp_path_factory.mktemp("platform"))))
    yield cluster
    ok(playbook(cluster, path="playbooks/uninstall.yml"))


class TestKnativeFeatureFlags:
    def test_knatives_webhook_rejects_a_node_selector_while_the_flag_is_off(self, platform):
        turn_flag_off(platform)
        # handshake: Knative's webhook serves and has read the flag (a plain Knative Service passes)
        plain = knative_service("plain")
        wait_for(lambda: dry_run_create(platform, plain).returncode == 0, 120, "Knative's webhook")
        rejected = wait_for(
            lambda: (
                (r := dry_run_create(platform, knative_service("pinned", ON_LINUX_NODES))).returncode and r
            ),
            60,
            "the rejection of a nodeSelector",
        )
        assert "denied the request" in rejected.stderr and "nodeSelector" in rejected.stderr, rejected.stderr
        assert not webhooks.not_ready(rejected.stderr)  # a rejection is final: the roles never retry it

    def test_kserve_cannot_create_the_predictor_of_such_an_inference_service(self, platform):
        turn_flag_off(platform)
        isvc = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "pinned-by-hand", "namespace": NAMESPACE},
            "spec": {
                "predictor": {
                    "nodeSelector": ON_LINUX_NODES,
                    "containers": [{"name": "kserve-container", "image": "ghcr.io/kserve-ansible/m:0.1.0"}],
                }
            },
        }
        platform.kubectl("apply", "-f", "-", stdin=json.dumps(isvc))
        try:

            def denied_event():
                selector = "involvedObject.name=pinned-by-hand"
                events = get(platform, "events", "-n", NAMESPACE, "--field-selector", selector)
                return [
                    e["message"] for e in events["items"] if "denied the request" in (e.get("message") or "")
                ]

            [message, *_] = wait_for(denied_event, 120, "KServe's event about Knative's rejection")
            assert "nodeSelector" in message
        finally:
            platform.kubectl("delete", "inferenceservice", "pinned-by-hand", "-n", NAMESPACE, "--wait=true")

    def test_models_role_turns_on_the_flag_its_model_needs(self, platform, tmp_path):
        turn_flag_off(platform)
        pinned = models_vars(tmp_path, node_selector=ON_LINUX_NODES)
        ok(playbook(platform, "-e", pinned, tags="models"))  # waits until Ready, smoke-tests it
        features = get(
            platform, "configmap", "config-features", "-n", "knative-serving", "--show-managed-fields"
        )
        assert features["data"][FLAG] == "enabled"
        fields = features["metadata"]["managedFields"]
        owners = [f["manager"] for f in fields if FLAG in json.dumps(f.get("fieldsV1"))]
        assert owners == ["kserve-ansible-models"]
        ksvc = get(platform, "ksvc", f"{CUSTOM}-predictor", "-n", NAMESPACE)
        assert ksvc["spec"]["template"]["spec"]["nodeSelector"] == ON_LINUX_NODES
        assert ok(playbook(platform, "-e", pinned, tags="models"))["changed"] == 0

    def test_the_knative_role_leaves_the_models_flags_alone(self, platform, tmp_path):
        ok(playbook(platform, "-e", models_vars(tmp_path, node_selector=ON_LINUX_NODES), tags="models"))
        ok(playbook(platform, tags="knative"))
        assert config_features(platform)["data"][FLAG] == "enabled"


class Background:
    """ansible-playbook running in the background; its output is read as it comes."""

    def __init__(self, cluster, *args, tags=None):
        env = {
            **os.environ,
            "KSA_CLUSTER_DIR": cluster.state_dir,
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
        args = local_playbook_args("site.yml", *args, mirror=UPSTREAM_DIR, tags=tags)
        command = [str(BIN / "ansible-playbook"), *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.output += line

    def finish(self, timeout=900):
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.process.returncode


def kserve_webhook_selector() -> dict:
    """The KServe webhook Service's pod selector as the release ships it (not as a test may have left it)."""
    manifest = default_release_path("kserve", "kserve_version", "kserve.yaml")
    docs = (d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Service")
    [service] = (d for d in docs if (d["metadata"].get("namespace"), d["metadata"]["name"]) == KSERVE_WEBHOOK)
    return service["spec"]["selector"]


def delete_race_model(cluster):
    cluster.kubectl("delete", "inferenceservice", RACE, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")


@pytest.fixture
def kserve_webhook_not_serving(platform):
    """KServe's webhook Service selects no pod until the test calls the returned `serve()`."""
    namespace, name = KSERVE_WEBHOOK
    selector = kserve_webhook_selector()

    def endpoints():
        """The ready addresses behind the Service, in its Endpoints and in its EndpointSlices (which the API
        server routes webhook calls by; they may lag the Endpoints object)."""
        subsets = get(platform, "endpoints", name, "-n", namespace).get("subsets") or []
        label = f"kubernetes.io/service-name={name}"
        slices = get(platform, "endpointslices", "-n", namespace, "-l", label)["items"]
        in_slices = [e for s in slices for e in s.get("endpoints") or []]
        ready = [e for e in in_slices if (e.get("conditions") or {}).get("ready", True)]
        return [a for subset in subsets for a in subset.get("addresses") or []] + ready

    def set_selector(labels):
        patch = json.dumps({"spec": {"selector": labels}})
        platform.kubectl("patch", "service", name, "-n", namespace, "--type=strategic", "-p", patch)

    delete_race_model(platform)
    set_selector({**dict.fromkeys(selector), **NO_POD})  # strategic merge: null removes the real labels
    wait_for(lambda: not endpoints(), 60, "no endpoints behind KServe's webhook Service")
    # The API server resolves a webhook Service when it dials, and keeps the connection open between calls:
    # as long as the webhook's process lives, the next call still reaches it. The process is restarted (its
    # Deployment makes a new pod, which the Service does not select), as after an install where no
    # connection exists yet.
    pods = ",".join(f"{key}={value}" for key, value in selector.items())
    platform.kubectl("delete", "pod", "-n", namespace, "-l", pods, "--wait=true")

    def serve():
        set_selector({**dict.fromkeys(NO_POD), **selector})
        wait_for(endpoints, 120, "endpoints behind KServe's webhook Service again")

    yield serve
    serve()
    delete_race_model(platform)


class TestWebhookNotReady:
    def test_applying_while_kserves_webhook_does_not_serve_fails_without_the_retry(
        self, platform, kserve_webhook_not_serving, tmp_path
    ):
        race = models_vars(tmp_path, name=RACE)
        result = playbook(platform, "-e", race, "-e", "models_webhook_timeout=0", tags="models")
        assert result.returncode != 0
        assert "failed calling webhook" in result.stdout and "no endpoints available" in result.stdout
        assert "retries left" not in result.stdout

    def test_applying_while_kserves_webhook_does_not_serve_succeeds_through_the_retry(
        self, platform, kserve_webhook_not_serving, tmp_path
    ):
        run = Background(platform, "-e", models_vars(tmp_path, name=RACE), tags="models")
        try:
            retrying = re.compile(r"FAILED - RETRYING: \[localhost\]: .*Apply the InferenceServices")
            try:
                wait_for(lambda: retrying.search(run.output), 300, "the playbook's first retry")
            except AssertionError as timeout:
                raise AssertionError(f"{timeout}\nplaybook output so far:\n{run.output[-6000:]}") from None
            kserve_webhook_not_serving()
            assert run.finish() == 0, run.output[-6000:]
        finally:
            if run.process.poll() is None:
                run.process.kill()
        assert recap(run.output)["failed"] == 0
        assert get(platform, "inferenceservice", RACE, "-n", NAMESPACE)["metadata"]["name"] == RACE


class TestWebhookRejection:
    def test_a_rejection_by_kserves_webhook_fails_at_once(self, platform, tmp_path):
        # both image and a KServe runtime model: KServe's validator denies it; the role must not retry that
        sklearn = {"model": {"modelFormat": {"name": "sklearn"}}}
        bad = models_vars(tmp_path, name="denied", predictor_extra=sklearn)
        result = playbook(platform, "-e", bad, tags="models")
        assert result.returncode != 0
        assert "denied the request" in result.stdout
        assert "retries left" not in result.stdout  # no "FAILED - RETRYING: [...] (N retries left)" line
