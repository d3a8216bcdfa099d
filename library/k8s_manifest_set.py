#!/usr/bin/python
"""Ansible module: apply (or delete) a set of upstream release manifests and wait until it is usable."""

DOCUMENTATION = r"""
---
module: k8s_manifest_set
short_description: Server-side apply a set of release manifests, CRDs first, and wait until they are usable
description:
  - Reads one or more multi-document manifest files (official release URLs or a local mirror), verifies each
    against its pinned sha256 B(before) anything is applied, and server-side applies every object in one
    module run with the field manager C(kserve-ansible).
  - "Order: namespaces and CustomResourceDefinitions first (then waits until the CRDs are Established), then
    every other object, then admission webhook configurations. Objects of one phase are applied in parallel."
  - Objects with only C(metadata.generateName) (Knative's post-install Jobs) are created once, never applied.
  - With O(wait), waits until every Deployment of the set has rolled out (bounded by O(wait_timeout)); a
    timeout names each Deployment that is not ready and why its pods are not (e.g. C(Insufficient cpu)).
  - A write the API server refuses because an admission webhook does not serve yet (C(failed calling webhook),
    for no endpoints, connection refused or a CA bundle not injected yet), as right after an install, is
    retried until O(wait_timeout), with a warning saying how long it waited. A webhook's rejection
    (C(denied the request)) fails at once with the webhook's message.
  - C(changed) is what the API server reports (the object's resourceVersion moved). Check mode uses the API
    server's dry-run (C(dryRun=All)); objects whose namespace or CRD the same set would create are reported
    as to be created.
  - O(state=absent) deletes the objects in reverse order (webhooks first, CRDs and namespaces last) and waits
    until they are gone. It refuses to delete a CRD while custom resources of it that are not part of the set
    still exist, unless O(force_absent) is set.
version_added: "0.1.0"
author:
  - kserve-ansible maintainers (!UNKNOWN)
options:
  sources:
    description:
      - The manifest files, applied as one set (duplicates across files are applied once, the last one wins).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - File of a release in the project's release catalog (C(module_utils/releases.py)), for example
            C(serving-core.yaml) of O(sources[].component=knative-serving) O(sources[].version=1.16.0).
            With O(mirror_dir) it is read from C(<mirror_dir>/<component>/<version>/<name>), else downloaded
            from the release's official URL; either way verified against its pinned sha256. A download whose
            published bytes the catalog does not pin fails, unless O(extra_releases) gives its sha256 or
            O(allow_unpinned) is set.
          - A release not in the catalog fails with the list of supported versions, unless O(extra_releases)
            declares it.
          - Exactly one of O(sources[].name), O(sources[].url) and O(sources[].path).
        type: str
      component:
        description: Catalog component of a O(sources[].name) file, instead of O(component).
        type: str
      version:
        description: Release of a O(sources[].name) file, instead of O(version).
        type: str
      url:
        description:
          - HTTP(S) URL of any file (a private copy, say), checked against O(sources[].sha256); without one it
            fails, unless O(allow_unpinned) is set.
        type: str
      path:
        description: Local path of any file, checked against O(sources[].sha256).
        type: path
      sha256:
        description:
          - Expected sha256 of a O(sources[].url) or O(sources[].path) file. A mismatch fails the task before
            anything is applied.
        type: str
      label_selector:
        description:
          - Only the objects of this file whose labels match (C(kubectl apply -l) syntax, for example
            C(knative.dev/crd-install=true)). A selector that matches nothing applies nothing.
        type: str
  definitions:
    description:
      - Objects given as data (each a Kubernetes object with apiVersion, kind and metadata.name), applied in
        the same set as the O(sources) objects (O(patches) apply to them too). The models role passes its
        InferenceServices here, to apply them all in one run.
    type: list
    elements: dict
    default: []
  component:
    description: Catalog component of the O(sources[].name) files (C(cert-manager), C(net-istio),
      C(knative-serving), C(kserve)).
    type: str
  version:
    description: Release of the O(sources[].name) files.
    type: str
  mirror_dir:
    description:
      - Root of a local mirror of the release files (offline install), laid out as
        C(<mirror_dir>/<component>/<version>/<file>). When set (not empty), every O(sources[].name) file is
        read from it and must match its pinned sha256.
    type: path
  extra_releases:
    description:
      - Releases the catalog does not have, with the sha256 of each of their files, by component and version
        (the shape of the catalog's releases); the roles pass C(kserve_ansible_extra_releases).
    type: dict
    default: {}
  allow_unpinned:
    description:
      - Download files with no pinned sha256 (a O(sources[].url) without O(sources[].sha256), a release file
        whose published bytes the catalog does not pin) without verifying them, instead of failing.
      - Downloads are tried 4 times (2, 4 and 8 seconds apart) when the failure may pass (connection errors,
        timeouts, HTTP 408, 429 and 5xx); a failure names the URL.
    type: bool
    default: false
  image_overrides:
    description:
      - 'Images to deploy instead of the ones in the manifests (a private registry, an air-gapped mirror), as
        C({image or prefix: replacement}). The longest key that equals an image, or begins it up to a C(/),
        C(:) or C(@), is replaced by its value, so C({"gcr.io/knative-releases": "registry.local/knative"})
        keeps every Knative image''s digest. Rewritten are container images and every other image the
        objects name (keys C(image), C(*Image), C(*-image), C(--*image*=) flags, KServe''s
        C(inferenceservice-config)).'
      - The roles pass C(kserve_ansible_image_overrides); docs/images.md lists the images.
    type: dict
    default: {}
  patches:
    description:
      - Settings merged into objects of the set before they are applied, so the desired state is applied at
        once (no second writer). Dicts merge recursively; a dict merged into a string that holds a JSON object
        (KServe's C(inferenceservice-config)) merges into that JSON; C(null) removes a key.
      - A patch that names an object not in the set is an error.
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
  state:
    description: C(present) applies the set, C(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait for Deployments to roll out (present) or for deleted objects to disappear (absent).
    type: bool
    default: true
  wait_timeout:
    description: Upper bound in seconds for each wait (CRDs Established, Deployments rolled out, deletions).
    type: int
    default: 300
  webhook_timeout:
    description:
      - Seconds to retry a write an admission webhook cannot take yet (C(failed calling webhook)); default
        O(wait_timeout). V(0) fails at once with the API server's message, for a caller that retries itself
        (an C(until:) loop with the test C(kserve_ansible.serving.webhook_not_ready)).
    type: int
  field_manager:
    description: Server-side apply field manager.
    type: str
    default: kserve-ansible
  force_conflicts:
    description:
      - Take over fields another field manager owns (C(force=true)). When false, such an object is left as is,
        reported with action C(conflict) and a warning, and the run goes on.
    type: bool
    default: false
  force_absent:
    description:
      - With O(state=absent), delete the custom resources that would block the CRD deletion first (and remove
        their finalizers if their controller does not within half of O(wait_timeout)). Data loss by design.
    type: bool
    default: false
  protect_crds:
    description:
      - With O(state=absent), CRD names (besides the CRDs of the set) whose remaining custom resources block
        the deletion. Lets a Helm-managed install use the same guard with no O(sources).
    type: list
    elements: str
    default: []
  owned_annotations:
    description:
      - With O(state=absent), custom resources carrying all these annotations belong to the install and do
        not block the CRD deletion, for example a Helm chart's own resources (annotations
        C(meta.helm.sh/release-name) and C(meta.helm.sh/release-namespace)).
    type: dict
    default: {}
  workers:
    description: Parallel API requests within one phase.
    type: int
    default: 8
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description:
      - The API server's dry run (C(dryRun=All)); objects whose namespace or CRD the same set would create are
        reported as to be created.
  diff_mode:
    support: full
    description:
      - Returns the difference between each object before and after the apply.
      - A Secret's values never show (nor kubectl's copy of them in its last-applied annotation); its keys do,
        and a value that changes shows as C(<hidden>) before and C(<hidden, changed>) after. The values of
        Secrets given in O(definitions) or O(patches) are masked in the result like C(no_log) values.
requirements:
  - kubernetes >= 24.2.0
  - PyYAML
"""

EXAMPLES = r"""
- name: Install cert-manager from its release, or from the mirror when one is given
  kserve_ansible.serving.k8s_manifest_set:
    component: cert-manager
    version: 1.16.2
    mirror_dir: "{{ kserve_ansible_mirror_dir }}"
    sources:
      - name: cert-manager.yaml

- name: Install Knative Serving and net-istio from a mirror, with the domain set
  kserve_ansible.serving.k8s_manifest_set:
    mirror_dir: /srv/mirror
    version: 1.16.0
    sources:
      - {component: knative-serving, name: serving-crds.yaml}
      - {component: knative-serving, name: serving-core.yaml}
      - {component: net-istio, name: net-istio.yaml}
    patches:
      - kind: ConfigMap
        name: config-domain
        namespace: knative-serving
        merge:
          data:
            203.0.113.10.sslip.io: ""
    wait_timeout: 600

- name: Uninstall KServe, keeping its CRDs while InferenceServices exist
  kserve_ansible.serving.k8s_manifest_set:
    state: absent
    sources:
      - url: https://mirror.example.com/kserve/kserve.yaml
        sha256: "{{ private_kserve_yaml_sha256 }}"
"""

RETURN = r"""
objects:
  description: Every object of the set and what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: Deployment, apiVersion: apps/v1, namespace: cert-manager, name: cert-manager, action: created}
summary:
  description: How many objects got each action (created, updated, unchanged, deleted, absent, conflict).
  returned: always
  type: dict
  sample: {created: 3, unchanged: 46}
"""


from ansible.module_utils.common.text.converters import to_text
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ..module_utils import downloads, images, k8s_api, k8s_delete, manifests
from ..module_utils.k8s_apply import Applier

SOURCE_SPEC = {
    "name": {"type": "str"},
    "component": {"type": "str"},
    "version": {"type": "str"},
    "url": {"type": "str"},
    "path": {"type": "path"},
    "sha256": {"type": "str"},
    "label_selector": {"type": "str"},
}


def argument_spec():
    spec = dict(AUTH_ARG_SPEC)
    spec.update(
        sources={
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": SOURCE_SPEC,
            "mutually_exclusive": [("name", "url", "path")],
            "required_one_of": [("name", "url", "path")],
        },
        component={"type": "str"},
        version={"type": "str"},
        mirror_dir={"type": "path"},
        extra_releases={"type": "dict", "default": {}},
        allow_unpinned={"type": "bool", "default": False},
        image_overrides={"type": "dict", "default": {}},
        definitions={"type": "list", "elements": "dict", "default": []},
        patches={"type": "list", "elements": "dict", "default": [], "options": manifests.PATCH_SPEC},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        wait={"type": "bool", "default": True},
        wait_timeout={"type": "int", "default": 300},
        webhook_timeout={"type": "int"},
        field_manager={"type": "str", "default": "kserve-ansible"},
        force_conflicts={"type": "bool", "default": False},
        force_absent={"type": "bool", "default": False},
        protect_crds={"type": "list", "elements": "str", "default": []},
        owned_annotations={"type": "dict", "default": {}},
        workers={"type": "int", "default": 8},
    )
    return spec


def run(module):
    params = module.params
    # First, as a failure returns the arguments too: the Secret values among them, masked like no_log values.
    patched = [{"kind": patch["kind"], **patch["merge"]} for patch in params["patches"]]
    module._module.no_log_values.update(manifests.secret_values([*params["definitions"], *patched]))
    if params["wait_timeout"] < 1 or params["workers"] < 1:
        module.fail_json(msg="wait_timeout and workers must be positive")
    if (params["webhook_timeout"] or 0) < 0:
        module.fail_json(msg="webhook_timeout must be >= 0")
    sources = [
        manifests.ManifestSource.from_params(
            source,
            mirror_dir=params["mirror_dir"] or "",
            extra_releases=params["extra_releases"],
            component=params["component"] or "",
            version=params["version"] or "",
            allow_unpinned=params["allow_unpinned"],
        )
        for source in params["sources"]
    ]
    if params["definitions"]:
        objects = manifests.load_manifest_set(sources, [], downloads.fetch)
        inline = manifests.inline_objects(params["definitions"])
        objects = manifests.apply_patches(manifests.dedupe([*objects, *inline]), params["patches"])
    else:
        objects = manifests.load_manifest_set(sources, params["patches"], downloads.fetch)
    objects = images.override_images(objects, params["image_overrides"])
    if not objects and not (params["state"] == "absent" and params["protect_crds"]):
        module.exit_json(changed=False, objects=[], summary={}, msg="no object matched")

    api = k8s_api.Api(
        k8s_api.connect(module),
        check_mode=module.check_mode,
        want_diff=module._diff,
        workers=params["workers"],
        timeout=params["wait_timeout"],
        webhook_timeout=params["webhook_timeout"],
        warn=module.warn,
    )
    if params["state"] == "present":
        applier = Applier(
            api, field_manager=params["field_manager"], force_conflicts=params["force_conflicts"]
        )
        results = applier.apply(objects, wait=params["wait"])
    else:
        results = k8s_delete.delete(
            api,
            objects,
            force_absent=params["force_absent"],
            protect_crds=params["protect_crds"],
            owned_annotations=params["owned_annotations"],
            wait=params["wait"],
        )
    summary = {}
    for result in results:
        summary[result.action] = summary.get(result.action, 0) + 1
    outcome = {
        "changed": any(result.changed for result in results),
        "objects": [result.as_dict() for result in results],
        "summary": summary,
    }
    if module._diff:
        outcome["diff"] = [result.diff() for result in results if result.changed]
    module.exit_json(**outcome)


def main():
    module = AnsibleK8SModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        run(module)
    except manifests.ManifestError as exc:
        module.fail_json(msg=to_text(exc))
    except CoreException as exc:
        module.fail_from_exception(exc)
    except Exception as exc:
        k8s_api.fail(module, exc)


if __name__ == "__main__":
    main()
