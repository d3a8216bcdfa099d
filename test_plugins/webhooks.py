"""Tests over API errors of admission webhooks (module_utils/webhooks.py).

    until: result is not kserve_ansible.serving.webhook_not_ready

True for a failed task result (or an error message) saying an admission webhook could not be called yet
(`failed calling webhook`: no endpoints, connection refused, certificate not trusted yet): worth a retry.
False for success and for every other error, a webhook's rejection (`denied the request`) included.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.kserve_ansible.serving.plugins.module_utils import webhooks


def webhook_not_ready(result):
    if isinstance(result, Mapping):
        if not result.get("failed"):
            return False
        return webhooks.not_ready(result.get("msg"))
    return webhooks.not_ready(result)


class TestModule:
    def tests(self):
        return {"webhook_not_ready": webhook_not_ready}
