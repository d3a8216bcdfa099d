"""Filters over Knative's config-features flags (module_utils/knative_features.py).

{{ manifests | kserve_ansible.serving.knative_features_needed }}   -> {flag: [namespace/name, ...]}
{{ needed | kserve_ansible.serving.knative_features_data(live_data) }}   -> config-features data to apply
{{ features | kserve_ansible.serving.knative_features_invalid }}   -> {flag: value} Knative would refuse
"""

from __future__ import annotations

from ansible_collections.kserve_ansible.serving.plugins.module_utils import knative_features


class FilterModule:
    def filters(self):
        return {
            "knative_features_needed": knative_features.flags_needed,
            "knative_features_data": knative_features.features_data,
            "knative_features_invalid": knative_features.invalid_values,
        }
