"""The project as the installed collection kserve_ansible.serving, used as another project would use it.

`collections/build.sh` builds the tarball from the in-repo view; `ansible-galaxy collection install` puts it
in a directory outside the repository; a playbook there, with an ansible.cfg that knows only that directory
(kubernetes.core comes from the venv, where `make setup` installs it), calls our roles, modules and filters
by FQCN. The play gives the connection settings ONCE, as

    module_defaults:
      group/kserve_ansible.serving.k8s: {kubeconfig: ..., context: ...}

and nowhere else; the kubeconfig's current context points at a dead server, so a module that does not get
the defaults (ours, kubernetes.core's k8s/k8s_info, helm's helm_info, or a role's) fails. The same play
without the module_defaults fails against the dead context and changes nothing; with them it converges Istio
(the istio role) and an InferenceService that KServe makes Ready on the installed platform (fixture
`serving_platform`; kubernetes.core.k8s + our wait, k8s_info, probe, preflight) and renders the models role's
manifests with its filter, and a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass

import pytest
import yaml

from devcluster.cluster import BIN_DIR
from tests.helpers import ROOT, recap
from tests.upstream import UPSTREAM_DIR, default_release_path

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BIN = pathlib.Path(sys.executable).parent
MIRROR = UPSTREAM_DIR
ISVC_CRD = default_release_path(
    "kserve", "kserve_version", "charts/kserve-crd/templates/serving.kserve.io_inferenceservices.yaml"
)
GOOD, DEAD = "kserve-local", "unreachable"
DEAD_SERVER = "https://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once
NAMESPACE, ISVC = "collection-fqcn", "fqcn-echo"


@dataclass(frozen=True)
class Outside:
    """A directory outside the repository with the installed collection and its own ansible.cfg."""

    dir: pathlib.Path
    tarball: pathlib.Path
    collections: pathlib.Path
    kubeconfig: pathlib.Path

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "K8S_AUTH_"))}
        env.pop("PYTHONPATH", None)
        return {
            **env,
            "ANSIBLE_CONFIG": str(self.dir / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "KUBECONFIG": str(self.kubeconfig),  # what a module without the play's defaults falls back to
            "PATH": os.pathsep.join([str(BIN), str(BIN_DIR), env.get("PATH", "")]),  # helm from make tools
        }

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), cwd=self.dir, env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def playbook(self, play: list, *args: str) -> subprocess.CompletedProcess:
        path = self.dir / "site.yml"
        path.write_text(yaml.safe_dump(play, sort_keys=False))
        return self.run(str(BIN / "ansible-playbook"), str(path), *args)


def kubeconfig_with_dead_default(cluster_kubeconfig: str, path: pathlib.Path) -> pathlib.Path:
    """The local cluster as context GOOD; the current context DEAD points at a server nobody answers on."""
    config = yaml.safe_load(pathlib.Path(cluster_kubeconfig).read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["contexts"] = [
        {"name": GOOD, "context": current["context"]},
        {"name": DEAD, "context": {"cluster": DEAD, "user": current["context"]["user"]}},
    ]
    config["clusters"].append({"name": DEAD, "cluster": {"server": DEAD_SERVER}})
    config["current-context"] = DEAD
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def outside(serving_platform, tmp_path_factory):
    base = tmp_path_factory.mktemp("outside-project")
    assert not base.resolve().is_relative_to(ROOT)
    tool_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    built = subprocess.run(
        ["bash", str(ROOT / "collections" / "build.sh"), str(base / "build")],
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (base / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {base / 'collections'}\ninterpreter_python = auto_silent\n"
        "retry_files_enabled = false\n"
    )
    out = Outside(
        dir=base,
        tarball=pathlib.Path(built.stdout.strip().splitlines()[-1]),
        collections=base / "collections",
        kubeconfig=kubeconfig_with_dead_default(serving_platform.kubeconfig, base / "kubeconfig"),
    )
    # kubernetes.core, our dependency, is already installed (the venv): nothing is fetched from Galaxy.
    installed = out.run(
        str(BIN / "ansible-galaxy"), "collection", "install", str(out.tarball), "-p", str(out.collections)
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield out
    removed = out.playbook(cleanup_play(out))  # the session's cluster as it was, for the tests after these
    assert removed.returncode == 0, removed.stdout[-6000:] + removed.stderr[-3000:]


def connection_defaults(outside: Outside) -> dict:
    return {"group/kserve_ansible.serving.k8s": {"kubeconfig": str(outside.kubeconfig), "context": GOOD}}


def cleanup_play(outside: Outside) -> list:
    """The InferenceService and its namespace; the platform (Istio included) stays for the next tests."""
    isvc = {"api_version": "serving.kserve.io/v1beta1", "kind": "InferenceService", "namespace": NAMESPACE}
    absent = {"state": "absent", "wait": True}
    return [
        {
            "name": "Remove what the tests added",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "module_defaults": connection_defaults(outside),
            "tasks": [
                {"name": "InferenceService", "kubernetes.core.k8s": {**isvc, "name": ISVC, **absent}},
                {
                    "name": "Namespace",
                    "kubernetes.core.k8s": {"kind": "Namespace", "name": NAMESPACE, **absent},
                },
            ],
        }
    ]


def the_play(outside: Outside, module_defaults: bool) -> list:
    """Roles, our four modules and kubernetes.core's, by FQCN; connection settings only in module_defaults."""
    entry = {
        "name": ISVC,
        "namespace": NAMESPACE,
        "image": "dev.local/echo-model:1.0",  # no process (kwok); Knative skips resolving dev.local tags
        "hf_token": False,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    settings = {
        "namespace": NAMESPACE,
        "kserve_version": "0.14.1",
        "deployment_mode": "Serverless",
        "logger_url": "",
        "hf_token_secret": "",
        "rollout": "direct",
    }
    isvc = {"api_version": "serving.kserve.io/v1beta1", "kind": "InferenceService", "namespace": NAMESPACE}
    play = {
        "name": "The serving collection from outside the repository, connection settings once",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "kserve_ansible_mirror_dir": str(MIRROR),
            "fqcn_entry": entry,
            "fqcn_with": settings,
            "fqcn_isvc": "{{ fqcn_entry | kserve_ansible.serving.inference_service_manifest(fqcn_with) }}",
            "models_render_dir": str(outside.dir / "rendered"),
        },
        "roles": ["kserve_ansible.serving.kserve_ansible", "kserve_ansible.serving.istio"],
        "tasks": [
            {
                "name": "Preflight (ours)",
                "kserve_ansible.serving.cluster_preflight": {"required_cpu": "1", "required_memory": "1Gi"},
            },
            {
                "name": "InferenceService CRD (kubernetes.core.k8s)",
                "kubernetes.core.k8s": {
                    "src": str(ISVC_CRD),
                    "wait": True,
                    "wait_condition": {"type": "Established"},
                },
            },
            {
                "name": "Namespace (kubernetes.core.k8s)",
                "kubernetes.core.k8s": {"kind": "Namespace", "name": NAMESPACE},
            },
            {
                # Server-side apply, as the models role applies: with KServe's webhooks a plain update
                # (merge patch) writes the object again on every run (changed=true, only managedFields differ)
                "name": "InferenceService from our filter (kubernetes.core.k8s)",
                "kubernetes.core.k8s": {
                    "definition": "{{ fqcn_isvc }}",
                    "apply": True,
                    "server_side_apply": {"field_manager": "kserve-ansible-fqcn-test"},
                },
            },
            {
                "name": "Wait until it is Ready (ours)",
                "kserve_ansible.serving.inference_service_wait": {
                    "name": ISVC,
                    "namespace": NAMESPACE,
                    "timeout": 120,
                },
                "register": "fqcn_wait",
            },
            {
                "name": "Read it (kubernetes.core.k8s_info)",
                "kubernetes.core.k8s_info": {**isvc, "name": ISVC},
                "register": "fqcn_info",
            },
            {
                "name": "Resolve where a probe would go (ours, check mode: reads status.url, sends nothing)",
                "kserve_ansible.serving.inference_probe": {
                    "name": ISVC,
                    "namespace": NAMESPACE,
                    "instances": ["hello"],
                },
                "check_mode": True,
                "register": "fqcn_probe",
            },
            {
                "name": "Helm releases in the namespace (kubernetes.core.helm_info, the helm group)",
                "kubernetes.core.helm_info": {"name": "none-here", "release_namespace": NAMESPACE},
                "register": "fqcn_helm",
            },
            {
                "name": "Render the models role's manifests (its filter, inside the installed collection)",
                "ansible.builtin.include_role": {
                    "name": "kserve_ansible.serving.models",
                    "tasks_from": "render",
                },
            },
            {
                "name": "Report",
                "ansible.builtin.debug": {
                    "msg": {
                        "wait_url": "{{ fqcn_wait.url }}",
                        "info_url": "{{ fqcn_info.resources[0].status.url }}",
                        "probe_url": "{{ fqcn_probe.url }}",
                        "helm_status": "{{ fqcn_helm.status | default(None) }}",
                    }
                },
            },
        ],
    }
    if module_defaults:
        play["module_defaults"] = connection_defaults(outside)
    return [play]


def report(result: subprocess.CompletedProcess) -> dict:
    """The Report task's message (default callback: `"msg": {...}`)."""
    text = result.stdout[result.stdout.index("TASK [Report]") :]
    start = text.index('"msg": ') + len('"msg": ')
    return json.JSONDecoder().raw_decode(text[start:])[0]


def converged(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return recap(result.stdout)


def test_the_tarball_is_the_repository_sources_with_links_resolved(outside):
    with tarfile.open(outside.tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
        assert (manifest["namespace"], manifest["name"]) == ("kserve_ansible", "serving")
        assert not [name for name, m in members.items() if m.issym() or m.islnk()]
        for source, shipped in (("library", "plugins/modules"), ("module_utils", "plugins/module_utils")):
            for path in (ROOT / source).glob("*.py"):
                assert tar.extractfile(f"{shipped}/{path.name}").read() == path.read_bytes(), path
        assert (
            tar.extractfile("plugins/filter/inference_services.py").read()
            == (ROOT / "filter_plugins" / "inference_services.py").read_bytes()
        )
        assert (
            tar.extractfile("roles/istio/tasks/main.yml").read()
            == (ROOT / "roles" / "istio" / "tasks" / "main.yml").read_bytes()
        )
        assert "meta/runtime.yml" in members
    listed = outside.run(str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    paths = {path: found for path, found in json.loads(listed.stdout).items()}
    where = [path for path, found in paths.items() if "kserve_ansible.serving" in found]
    assert where == [str(outside.collections / "ansible_collections")]  # not the repository's view
    assert any("kubernetes.core" in found for found in paths.values())


def test_without_module_defaults_the_play_fails_against_the_dead_current_context(outside, local_cluster):
    from kubernetes import client

    core = client.CoreV1Api(local_cluster.api_client())
    before = {ns.metadata.name for ns in core.list_namespace().items}
    result = outside.playbook(the_play(outside, module_defaults=False))
    assert result.returncode != 0
    assert "127.0.0.1', port=9" in result.stdout or "127.0.0.1:9" in result.stdout, result.stdout[-4000:]
    assert {ns.metadata.name for ns in core.list_namespace().items} == before
    assert NAMESPACE not in before


def test_module_defaults_alone_converge_the_cluster_through_the_installed_collection(outside, local_cluster):
    from kubernetes import client

    result = outside.playbook(the_play(outside, module_defaults=True))
    assert converged(result)["changed"] > 0
    api = local_cluster.api_client()
    for deployment in client.AppsV1Api(api).list_namespaced_deployment("istio-system").items:
        available = {c.type: c.status for c in deployment.status.conditions or []}.get("Available")
        assert available == "True", f"istio-system/{deployment.metadata.name} not Available"
    isvc = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", ISVC
    )
    url = isvc["status"]["url"]
    assert url.startswith(f"http://{ISVC}.{NAMESPACE}.")
    probe_url = f"{url}/v1/models/{ISVC}:predict"  # resolved from status.url; check mode sends nothing
    assert report(result) == {"wait_url": url, "info_url": url, "probe_url": probe_url, "helm_status": None}
    rendered = sorted(p.name for p in (outside.dir / "rendered").iterdir())
    assert rendered == ["custom-transformer.yaml", "huggingface-distilbert.yaml"]
    manifest = yaml.safe_load((outside.dir / "rendered" / "custom-transformer.yaml").read_text())
    assert manifest["kind"] == "InferenceService"


def test_a_second_run_changes_nothing(outside):
    assert converged(outside.playbook(the_play(outside, module_defaults=True)))["changed"] == 0
