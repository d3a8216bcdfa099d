DOCUMENTATION = r"""
name: release_file
short_description: The text of release files from the release catalog, read from the mirror or downloaded
description:
  - Reads files of a release in the project's release catalog (C(module_utils/releases.py)) from
    C(<mirror_dir>/<component>/<version>/<file>) when O(mirror_dir) is set, else from the release's URL, and
    verifies each against its pinned sha256 the way M(kserve_ansible.serving.k8s_manifest_set) does (the same
    code, downloads retried the same way) before returning it.
  - A release or file the catalog does not have fails with what it has.
options:
  _terms:
    description: File names in the release (for example C(grafana/knative-scaling.json)); lists are flattened.
    required: true
  component:
    description: Catalog component (for example C(knative-monitoring)).
    type: str
    required: true
  version:
    description: Release of the component.
    type: str
    required: true
  mirror_dir:
    description: Root of the offline mirror; empty downloads from the release URL.
    type: str
    default: ""
  extra_releases:
    description: Releases the catalog does not have (C(kserve_ansible_extra_releases)).
    type: dict
    default: {}
  allow_unpinned:
    description:
      - Download files whose published bytes have no pinned sha256 without verifying them
        (C(kserve_ansible_allow_unpinned)), instead of failing.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Read two of Knative's dashboards
  ansible.builtin.set_fact:
    dashboards: >-
      {{ query('kserve_ansible.serving.release_file',
               'grafana/knative-scaling.json', 'grafana/knative-reconciler.json',
               component='knative-monitoring', version='36a2099', mirror_dir=kserve_ansible_mirror_dir) }}
"""

RETURN = r"""
_raw:
  description: The text of each file, in the order of the terms.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.lookup import LookupBase
from ansible_collections.kserve_ansible.serving.plugins.module_utils import downloads, manifests


def _flatten(terms):
    for term in terms:
        if isinstance(term, (list, tuple)):
            yield from _flatten(term)
        else:
            yield str(term)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        context = {
            "component": self.get_option("component"),
            "version": str(self.get_option("version")),
        }
        texts = []
        for name in _flatten(terms):
            try:
                source = manifests.ManifestSource.from_params(
                    {"name": name},
                    mirror_dir=self.get_option("mirror_dir") or "",
                    extra_releases=self.get_option("extra_releases") or {},
                    allow_unpinned=self.get_option("allow_unpinned"),
                    **context,
                )
                data = manifests.read_source(source, downloads.fetch)
                manifests.verify_checksum(source, data)
            except manifests.ManifestError as exc:
                raise AnsibleLookupError(to_text(exc)) from exc
            texts.append(to_text(data))
        return texts
