"""Filters and tests over the release catalog (module_utils/releases.py), for playbooks and roles.

    {{ kserve_version | kserve_ansible.serving.version_problem('kserve_version', extra_releases) }}
    {{ 'kserve' | kserve_ansible.serving.release_chart('kserve-crd', kserve_version, mirror_dir) }}
    {{ 'kserve' | kserve_ansible.serving.release_versions(extra_releases) }}
    {{ {} | kserve_ansible.serving.version_pins }}

The test `version_pin` is in test_plugins/releases.py (the collection's plugins/test).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.kserve_ansible.serving.plugins.module_utils import releases


def version_problem(value, variable, extra_releases=None):
    """'' when `value` is a supported release for the pin `variable`, else what is wrong with it."""
    try:
        return releases.version_problem(variable, value, extra_releases)
    except releases.ReleaseError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def release_chart(component, chart, version, mirror_dir=""):
    try:
        return releases.chart_ref(component, chart, version, mirror_dir or "")
    except releases.ReleaseError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def release_versions(component, extra_releases=None):
    try:
        return releases.supported_versions(component, extra_releases)
    except releases.ReleaseError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def version_pins(_ignored=None):
    """{pin variable: [components it pins]}."""
    return {variable: list(components) for variable, components in releases.VERSION_PINS.items()}


class FilterModule:
    def filters(self):
        return {
            "version_problem": version_problem,
            "release_chart": release_chart,
            "release_versions": release_versions,
            "version_pins": version_pins,
        }
