"""Tests over the release catalog (module_utils/releases.py); the filters are in filter_plugins/releases.py.

{{ kserve_version is kserve_ansible.serving.version_pin('kserve_version', extra_releases) }}
"""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible_collections.kserve_ansible.serving.plugins.module_utils import releases


def version_pin(value, variable, extra_releases=None):
    """True when `value` is a supported release for the pin `variable` (see the filter version_problem)."""
    try:
        return releases.version_problem(variable, value, extra_releases) == ""
    except releases.ReleaseError as exc:
        raise AnsibleError(str(exc)) from exc


class TestModule:
    def tests(self):
        return {"version_pin": version_pin}
