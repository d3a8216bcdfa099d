#!/usr/bin/python
"""Ansible module: preview which InferenceServices a KServe upgrade restarts, and why."""

DOCUMENTATION = r"""
---
module: kserve_upgrade_plan
short_description: Preview which InferenceServices a KServe upgrade will restart, and why
description:
  - Read-only. Compares what the cluster's KServe builds InferenceService pods from now with what the target
    release ships, for the parts each InferenceService uses, and says for each InferenceService whether its
    pods will be replaced (a new Knative revision, or a Deployment rollout in RawDeployment mode) and why.
  - A predictor's serving runtime (the ClusterServingRuntime it names, else the one of its model format whose
    image it runs) counts when the target release's runtime differs in a field that goes into the pods
    (containers, volumes, labels, annotations, scheduling), e.g. its image C(kserve/huggingfaceserver:v0.14.1
    -> v0.15.2). With C(runtimeVersion) set, only the image repository counts.
  - "C(inferenceservice-config): explainer images are built into the explainer's pods (replaced). The agent
    (request logger, batcher) and the storage-initializer are injected by KServe's pod webhook when a pod is
    created: running pods keep theirs, so a new image there is reported in the result's C(later),
    not as a restart."
  - The target release is read like M(kserve_ansible.serving.k8s_manifest_set) reads it (catalog files from
    the release URL or O(mirror_dir), sha256 verified, O(patches) merged), or given rendered in O(manifests)
    (for example the output of C(helm template)).
  - Also returns the version the cluster runs (the controller's image tag) and, given O(command_line), the
    exact command that returns the cluster to it.
version_added: "0.2.0"
author:
  - kserve-ansible maintainers (!UNKNOWN)
options:
  version:
    description: The target KServe release (a release of the catalog or of O(extra_releases)).
    type: str
    required: true
  sources:
    description:
      - Files of the target release holding its ClusterServingRuntimes and C(inferenceservice-config), as
        O(kserve_ansible.serving.k8s_manifest_set#module:sources[].name) names them.
    type: list
    elements: str
    default: [kserve.yaml, kserve-cluster-resources.yaml]
  manifests:
    description:
      - The target release's objects as YAML text instead of O(sources) (for example a rendered Helm chart).
    type: str
  mirror_dir:
    description: Root of a local mirror of the release files (see M(kserve_ansible.serving.k8s_manifest_set)).
    type: path
  extra_releases:
    description: Releases the catalog does not have, with the sha256 of their files.
    type: dict
    default: {}
  allow_unpinned:
    description:
      - Download release files whose published bytes have no pinned sha256 without verifying them, as
        O(kserve_ansible.serving.k8s_manifest_set#module:allow_unpinned) does.
    type: bool
    default: false
  image_overrides:
    description:
      - The images the kserve role deploys instead of the release's (C(kserve_ansible_image_overrides), as
        O(kserve_ansible.serving.k8s_manifest_set#module:image_overrides)), so that the preview compares the
        images that will run. Applied to the release files, not to O(manifests) (the helm method does not
        rewrite images).
    type: dict
    default: {}
  patches:
    description:
      - Settings merged into the target release's objects, as the kserve role merges them when it applies
        the release (same shape as M(kserve_ansible.serving.k8s_manifest_set)'s O(patches)).
    type: list
    elements: dict
    default: []
    suboptions:
      kind:
        description: Kind of the object to patch.
        type: str
        required: true
      name:
        description: Name of the object to patch.
        type: str
        required: true
      namespace:
        description: Namespace of the object to patch (omit for cluster-scoped objects).
        type: str
      merge:
        description: The fields to merge into the object.
        type: dict
        required: true
  runtimes_managed:
    description:
      - Whether the upgrade applies the release's ClusterServingRuntimes (the kserve role with
        C(kserve_cluster_serving_runtimes)); when false, runtime changes are not counted.
    type: bool
    default: true
  command_line:
    description:
      - The ansible-playbook command line of this run (for example from the lookup
        C(kserve_ansible.serving.playbook_command)); the module returns RV(rollback_command) built from it.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Only reads the cluster and the release files, so check mode gives the same answer.
  diff_mode:
    support: none
    description: Nothing is changed.
requirements:
  - kubernetes >= 24.2.0
  - PyYAML
"""

EXAMPLES = r"""
- name: Preview the upgrade to KServe 0.15.2
  kserve_ansible.serving.kserve_upgrade_plan:
    version: 0.15.2
    mirror_dir: "{{ kserve_ansible_mirror_dir }}"
    command_line: "{{ lookup('kserve_ansible.serving.playbook_command') }}"
  register: plan

- name: Say which InferenceServices restart
  ansible.builtin.debug:
    msg: "{{ plan.lines }}"

- name: Preview a Helm install's upgrade from the rendered chart
  kserve_ansible.serving.kserve_upgrade_plan:
    version: 0.16.0
    manifests: "{{ rendered.stdout }}"
"""

RETURN = r"""
current_version:
  description: The KServe release the cluster runs (its controller's image tag); empty without KServe.
  returned: always
  type: str
  sample: 0.14.1
target_version:
  description: O(version).
  returned: always
  type: str
  sample: 0.15.2
inference_services:
  description: Each InferenceService, whether its pods will be replaced, and why.
  returned: always
  type: list
  elements: dict
  sample:
    - namespace: kserve-test
      name: huggingface-distilbert
      replaced: true
      reasons:
        - "predictor: runtime kserve-huggingfaceserver containers[kserve-container].image:
          kserve/huggingfaceserver:v0.14.1 -> kserve/huggingfaceserver:v0.15.2"
      later: []
      runtimes: {predictor: kserve-huggingfaceserver}
      components: [predictor]
      revisions: {predictor: huggingface-distilbert-predictor-00001}
replaced:
  description: C(namespace/name) of the InferenceServices whose pods will be replaced.
  returned: always
  type: list
  elements: str
  sample: [kserve-test/huggingface-distilbert]
new_revisions:
  description:
    - The components that get a new Knative revision, with the one they have now (Serverless mode), which the
      upgrade waits for.
  returned: always
  type: list
  elements: dict
  sample:
    - namespace: kserve-test
      name: huggingface-distilbert
      component: predictor
      revision: huggingface-distilbert-predictor-00001
lines:
  description: The preview as lines for people.
  returned: always
  type: list
  elements: str
rollback_command:
  description: The command that returns the cluster to RV(current_version) (needs O(command_line)).
  returned: when O(command_line) is given and the current version is known
  type: str
  sample: ansible-playbook playbooks/upgrade.yml -e kserve_version=0.14.1
"""


from ansible.module_utils.common.text.converters import to_text
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ..module_utils import downloads, images, k8s_api, manifests, upgrade_plan
from ..module_utils.k8s_upgrade import read_state


def argument_spec():
    spec = dict(AUTH_ARG_SPEC)
    spec.update(
        version={"type": "str", "required": True},
        sources={
            "type": "list",
            "elements": "str",
            "default": ["kserve.yaml", "kserve-cluster-resources.yaml"],
        },
        manifests={"type": "str"},
        mirror_dir={"type": "path"},
        extra_releases={"type": "dict", "default": {}},
        allow_unpinned={"type": "bool", "default": False},
        image_overrides={"type": "dict", "default": {}},
        patches={"type": "list", "elements": "dict", "default": [], "options": manifests.PATCH_SPEC},
        runtimes_managed={"type": "bool", "default": True},
        command_line={"type": "list", "elements": "str", "default": []},
    )
    return spec


def target_objects(params):
    if params["manifests"]:
        objects = manifests.parse_documents(params["manifests"], "manifests")
        return manifests.apply_patches(manifests.dedupe(objects), params["patches"])
    sources = [
        manifests.ManifestSource.from_params(
            {"name": name},
            mirror_dir=params["mirror_dir"] or "",
            extra_releases=params["extra_releases"],
            component="kserve",
            version=params["version"],
            allow_unpinned=params["allow_unpinned"],
        )
        for name in params["sources"]
    ]
    objects = manifests.load_manifest_set(sources, params["patches"], downloads.fetch)
    return images.override_images(objects, params["image_overrides"])


def run(module):
    params = module.params
    target = target_objects(params)
    state = read_state(k8s_api.connect(module))
    entries = upgrade_plan.plan(
        state["isvcs"],
        state["workloads"],
        state["pods"],
        state["runtimes"],
        state["config"],
        target,
        runtimes_managed=params["runtimes_managed"],
    )
    current = upgrade_plan.controller_version(state["controller"])
    result = {
        "changed": False,
        "current_version": current,
        "target_version": params["version"],
        "inference_services": entries,
        "replaced": upgrade_plan.replaced_names(entries),
        "new_revisions": upgrade_plan.expected_revisions(entries),
        "lines": upgrade_plan.summary_lines(entries),
    }
    if params["command_line"] and current:
        result["rollback_command"] = upgrade_plan.rollback_command(params["command_line"], current)
    module.exit_json(**result)


def main():
    module = AnsibleK8SModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        run(module)
    except (manifests.ManifestError, upgrade_plan.PlanError) as exc:
        module.fail_json(msg=to_text(exc))
    except CoreException as exc:
        module.fail_from_exception(exc)
    except Exception as exc:
        k8s_api.fail(module, exc)


if __name__ == "__main__":
    main()
