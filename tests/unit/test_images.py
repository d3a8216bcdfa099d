"""The images the roles deploy: pinned, listed in docs/images.md, and movable to another registry with
kserve_ansible_image_overrides (module_utils/images.py), in the release files and the roles' templates."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils import images
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests as m

from devcluster.cluster import REPO_ROOT
from docs import gen_images_doc
from tests.helpers import run_playbook
from tests.upstream import UPSTREAM_DIR, default_release_path

needs_mirror = pytest.mark.skipif(not (UPSTREAM_DIR / "index.json").is_file(), reason="no upstream mirror")

PRIVATE = {
    "gcr.io/knative-releases": "registry.local/knative",
    "quay.io/jetstack": "registry.local/jetstack",
    "docker.io/istio": "registry.local/istio",
    "kserve/": "registry.local/kserve/",
    "quay.io/brancz": "registry.local/brancz",
}


def release(component, version_variable, name):
    path = default_release_path(component, version_variable, name)
    return m.parse_documents(path.read_text(), name)


def find(objects, kind, name):
    [found] = [obj for obj in objects if obj["kind"] == kind and obj["metadata"].get("name") == name]
    return found


class TestOverride:
    def test_the_longest_matching_key_wins_and_the_rest_of_the_image_stays(self):
        overrides = {"kserve/": "a.io/k/", "kserve/agent": "b.io/agent", "kserve/agent:v1": "c.io/x:1"}
        assert images.override("kserve/agent:v1", overrides) == "c.io/x:1"
        assert images.override("kserve/agent:v2", overrides) == "b.io/agent:v2"
        assert (
            images.override("kserve/agent@sha256:" + "a" * 64, overrides) == "b.io/agent@sha256:" + "a" * 64
        )
        assert images.override("kserve/router:v1", overrides) == "a.io/k/router:v1"

    def test_a_key_matches_only_up_to_a_separator(self):
        overrides = {"kserve/agent": "b.io/agent", "quay.io/jet": "x"}
        assert images.override("kserve/agentx:v1", overrides) == "kserve/agentx:v1"
        assert images.override("quay.io/jetstack/cert-manager-webhook:v1.16.2", overrides).startswith(
            "quay.io"
        )
        assert images.override("docker.io/kserve/agent:v1", overrides) == "docker.io/kserve/agent:v1"

    @pytest.mark.parametrize("overrides", [["kserve/"], {"kserve/": ""}, {"": "x"}, {"kserve/": 3}])
    def test_a_malformed_map_is_refused(self, overrides):
        with pytest.raises(m.ManifestError, match=r"^image overrides? "):
            images.override_images([], overrides)

    def test_an_empty_map_leaves_the_objects_alone(self):
        objects = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}]
        assert images.override_images(objects, {}) is objects


@needs_mirror
class TestReleaseFiles:
    def test_every_knative_image_moves_with_its_digest(self):
        objects = release("knative-serving", "knative_version", "serving-core.yaml")
        before = images.images_in(objects)
        after = images.images_in(images.override_images(objects, PRIVATE))
        assert before and all(image.startswith("gcr.io/knative-releases/") for image in before)
        assert after == [
            image.replace("gcr.io/knative-releases", "registry.local/knative") for image in before
        ]
        moved = images.override_images(objects, PRIVATE)
        queue = find(moved, "ConfigMap", "config-deployment")["data"]["queue-sidecar-image"]
        assert queue.startswith("registry.local/knative/knative.dev/serving/cmd/queue@sha256:")
        assert find(moved, "Image", "queue-proxy")["spec"]["image"] == queue

    def test_kserves_configured_images_move_inside_its_json_configuration(self):
        objects = release("kserve", "kserve_version", "kserve.yaml")
        moved = images.override_images(objects, PRIVATE)
        config = find(moved, "ConfigMap", "inferenceservice-config")["data"]
        assert json.loads(config["storageInitializer"])["image"].startswith(
            "registry.local/kserve/storage-initializer:"
        )
        assert json.loads(config["agent"])["image"].startswith("registry.local/kserve/agent:")
        assert (
            config["credentials"]
            == find(objects, "ConfigMap", "inferenceservice-config")["data"]["credentials"]
        )
        pod = find(moved, "Deployment", "kserve-controller-manager")["spec"]["template"]["spec"]
        assert [c["image"].split(":")[0] for c in pod["containers"]] == [
            "registry.local/kserve/kserve-controller",
            "registry.local/brancz/kube-rbac-proxy",
        ]
        left = [image for image in images.images_in(moved) if not image.startswith("registry.local/")]
        assert left == []

    def test_cert_managers_solver_image_flag_moves_too(self):
        moved = images.override_images(
            release("cert-manager", "cert_manager_version", "cert-manager.yaml"), PRIVATE
        )
        assert all(image.startswith("registry.local/jetstack/") for image in images.images_in(moved))
        args = find(moved, "Deployment", "cert-manager")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--acme-http01-solver-image=registry.local/jetstack/cert-manager-acmesolver:v1.16.2" in args

    def test_crds_are_left_alone(self):
        crds = release("knative-serving", "knative_version", "serving-crds.yaml")
        moved = images.override_images(crds, PRIVATE)
        assert all(after is before for after, before in zip(moved, crds, strict=True))

    def test_every_image_is_pinned_by_digest_or_tag_and_the_page_lists_them(self):
        page = gen_images_doc.render(UPSTREAM_DIR)
        assert "**unexplained**" not in page
        assert gen_images_doc.PAGE.read_text() == page, (
            "run: PYTHONPATH=collections python -m docs.gen_images_doc"
        )


class TestRoles:
    """Rendering with an override map, as the roles render: the models role's InferenceServices (through
    playbooks/render.yml) and each of the monitoring role's workloads (its templates, with its defaults)."""

    def test_the_models_role_renders_its_own_image_from_the_private_registry(self, tmp_path):
        settings = tmp_path / "settings.yml"
        overrides = {"ghcr.io/kserve-ansible": "registry.local/kserve-ansible"}
        settings.write_text(
            yaml.safe_dump({"models_render_dir": str(tmp_path), "kserve_ansible_image_overrides": overrides})
        )
        result = run_playbook("playbooks/render.yml", "-e", f"@{settings}")
        assert result.returncode == 0, result.stdout[-3000:]
        custom = yaml.safe_load((tmp_path / "custom-transformer.yaml").read_text())
        [container] = custom["spec"]["predictor"]["containers"]
        assert container["image"] == "registry.local/kserve-ansible/kserve-ansible-model:0.1.0"

    def test_the_monitoring_role_renders_each_workload_from_the_private_registry(self, tmp_path):
        role = REPO_ROOT / "roles" / "monitoring"
        for directory in ("templates", "files"):  # where the play looks for templates, as the role does
            (tmp_path / directory).symlink_to(role / directory)
        templates = ["prometheus", "grafana", "cloudevents-sink", "loki", "promtail"]
        render = {
            "name": "Render the template",
            "ansible.builtin.copy": {
                "dest": f"{tmp_path}/{{{{ item }}}}.yaml",
                "content": "{{ lookup('ansible.builtin.template', item ~ '.yaml.j2') }}",
                "mode": "0644",
            },
            "loop": templates,
        }
        shared = REPO_ROOT / "roles" / "kserve_ansible" / "defaults" / "main.yml"
        play = {
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [
                str(path) for path in (shared, role / "defaults" / "main.yml", role / "vars" / "main.yml")
            ],
            "tasks": [render],
        }
        playbook = tmp_path / "render.yml"
        playbook.write_text(yaml.safe_dump([play]))
        overrides = {"docker.io": "registry.local", "quay.io": "registry.local"}
        result = run_playbook(str(playbook), "-e", json.dumps({"kserve_ansible_image_overrides": overrides}))
        assert result.returncode == 0, result.stdout[-3000:]
        for name in templates:
            workloads = [obj for obj in yaml.safe_load_all((tmp_path / f"{name}.yaml").read_text()) if obj]
            found = images.images_in(workloads)
            assert found and all(image.startswith("registry.local/") for image in found), (name, found)
