"""Admission webhooks that do not serve yet: which API errors are worth a retry, and which are final.

Right after KServe (or Knative) is installed, its webhook Deployment may not serve yet: no endpoints behind
the webhook Service, the port not open, or a CA bundle not injected into the webhook configuration. The API
server then answers a write it has to send to that webhook with an InternalError (HTTP 500) whose message
says it "failed calling webhook", for example:

    Internal error occurred: failed calling webhook "inferenceservice.kserve-webhook-server.defaulter":
    failed to call webhook: Post "https://kserve-webhook-server-service.kserve.svc:443/...":
    no endpoints available for service "kserve-webhook-server-service"

That passes by itself within seconds to minutes, so it is retried (bounded). A webhook that answered and
rejected the object says it "denied the request" (HTTP 400-422): that is final and fails at once with the
webhook's message. The same words are used by `k8s_apply` (our modules, Python) and by the test
`kserve_ansible.serving.webhook_not_ready` (kubernetes.core.k8s tasks, `until:`).
"""

import re

NOT_SERVING = "failed calling webhook"
REJECTED = "denied the request"
_WEBHOOK_NAME = re.compile(r'failed calling webhook \\*"([^"\\]+)\\*"')
_CAUSES = (
    ("no endpoints available", "no endpoints behind its Service yet"),
    ("connection refused", "its port is not open yet"),
    ("x509", "its certificate is not trusted yet (CA bundle being injected)"),
    ("certificate", "its certificate is not trusted yet (CA bundle being injected)"),
    ("not found", "its Service is not there yet"),
    ("deadline exceeded", "it did not answer in time"),
    ("timeout exceeded", "it did not answer in time"),
    ("i/o timeout", "it did not answer in time"),
)


def not_ready(message):
    """True when an API error message says an admission webhook could not be called (retry), False for
    anything else, including a webhook's rejection (final)."""
    text = str(message or "")
    return NOT_SERVING in text and REJECTED not in text


def explain(message):
    """A short human sentence for a not-ready error: which webhook and why, for retry messages."""
    text = str(message or "")
    match = _WEBHOOK_NAME.search(text)
    name = f'admission webhook "{match.group(1)}"' if match else "an admission webhook"
    lowered = text.lower()
    cause = next((why for needle, why in _CAUSES if needle in lowered), "it cannot be called yet")
    return f"{name} does not serve yet: {cause}"
