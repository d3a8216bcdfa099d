"""Tests over the release catalog (module_utils/releases.py); the filters are in filter_plugins/releases.py.

{{ kserve_version is kserve_ansible.serving.version_pin('kserve_version', extra_releases) }}
"""

from __future__ import annotations

from ansible_collections.kserve_ansible.serving.plugins.filter.releases import version_problem


def version_pin(value, variable, extra_releases=None):
    """True when `value` is a supported release for the pin `variable` (see the filter version_problem)."""
    return version_problem(value, variable, extra_releases) == ""


class TestModule:
    def tests(self):
        return {"version_pin": version_pin}
