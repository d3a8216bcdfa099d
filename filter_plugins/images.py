"""The image override map (kserve_ansible_image_overrides, module_utils/images.py) for templates and roles.

    {{ monitoring_grafana_image | kserve_ansible.serving.image_override(kserve_ansible_image_overrides) }}
    {{ objects | kserve_ansible.serving.image_override(kserve_ansible_image_overrides) }}

An image (a string) is rewritten by the map; Kubernetes objects (a mapping or a list of them) get every image
in them rewritten, as k8s_manifest_set's image_overrides does.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.kserve_ansible.serving.plugins.module_utils import images
from ansible_collections.kserve_ansible.serving.plugins.module_utils.manifests import ManifestError


def image_override(value, overrides=None):
    try:
        images.check_overrides(overrides or {})
        if isinstance(value, str):
            return images.override(value, overrides or {})
        if isinstance(value, dict):
            return images.override_images([value], overrides or {})[0]
        return images.override_images(list(value), overrides or {})
    except ManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"image_override": image_override}
