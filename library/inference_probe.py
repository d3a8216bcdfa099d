#!/usr/bin/python
"""Ansible module: send real inference requests to a deployed model and check answers and latency."""

DOCUMENTATION = r"""
module: inference_probe
short_description: Send real inference requests to a KServe model and check the answers and latency
description:
  - Sends O(requests) identical inference requests (O(concurrency) at a time) to a deployed model and checks
    the HTTP status, the answers (O(expect), O(expect_response)) and latency SLOs (O(slo)); returns the
    measured figures (latencies, percentiles, status codes, a sample answer).
  - >-
    Protocols - V(v1) posts C({"instances": [...]}) to C(/v1/models/MODEL:predict); V(v2) (Open Inference
    Protocol) posts C({"inputs": [tensors]}) to C(/v2/models/MODEL/infer); V(raw) posts O(body) as is to
    O(path) (default C(/v1/models/MODEL:predict)), e.g. a custom model's C({"sequence": "..."}).
  - >-
    The service URL comes from O(url), or from status.url of the InferenceService O(name) in O(namespace)
    (read with the Kubernetes client, auth options as in kubernetes.core). With O(ingress_host), requests go
    to the ingress gateway with the service's host name in the C(Host) header, the way KServe users reach a
    service without DNS (C(curl -H "Host: NAME.NS.DOMAIN" http://INGRESS:PORT/...)).
  - Connection errors and HTTP 502/503/504 (a model still warming up) are retried up to O(retries) times
    per request with exponential backoff from O(retry_delay). Latency figures are those of the attempt that
    got the final answer; the number of retries is returned separately.
  - All inputs are validated before anything is sent; a malformed probe fails with a clear message and no
    request.
  - In check mode nothing is sent - inference requests are read-only in intent but run the model, cost
    compute and may be logged by a request logger, and in a check-mode run the model may not exist yet.
    The module validates its inputs, resolves the URL when it can, and reports what it would send.
version_added: "0.1.0"
author:
  - kserve-ansible maintainers (!UNKNOWN)
options:
  name:
    description:
      - Name of the InferenceService. Its status.url is the service URL unless O(url) is given. Default of
        O(model_name).
    type: str
  namespace:
    description: Namespace of the InferenceService.
    type: str
    default: default
  url:
    description: Base URL of the service (scheme and host, optionally a path prefix). Overrides status.url.
    type: str
  model_name:
    description: Model name in the request path. Defaults to O(name).
    type: str
  protocol:
    description: Inference protocol.
    type: str
    choices: [v1, v2, raw]
    default: v1
  instances:
    description: Inputs for O(protocol=v1), one list entry per input.
    type: list
    elements: raw
  inputs:
    description:
      - Input tensors for O(protocol=v2), each a mapping with C(name), C(shape), C(datatype) and C(data);
        the number of data elements must match the shape.
    type: list
    elements: dict
  body:
    description: JSON body for O(protocol=raw) (mapping or list).
    type: raw
  path:
    description: Request path for O(protocol=raw). Defaults to C(/v1/models/MODEL:predict).
    type: str
  headers:
    description: Extra HTTP headers. Never logged (they may carry credentials).
    type: dict
  bearer_token:
    description: "Token sent as C(Authorization: Bearer TOKEN). Never logged."
    type: str
  ingress_host:
    description: Send requests to this ingress gateway host, with the service's host name as C(Host) header.
    type: str
  ingress_port:
    description: Port of the ingress gateway (with O(ingress_host)).
    type: int
  ingress_scheme:
    description: Scheme used to reach the ingress gateway.
    type: str
    choices: [http, https]
    default: http
  endpoint_validate_certs:
    description: Verify the model endpoint's TLS certificate (the Kubernetes API uses O(validate_certs)).
    type: bool
    default: true
  endpoint_ca_path:
    description: CA bundle for the model endpoint's TLS certificate.
    type: path
  requests:
    description: Number of requests to send.
    type: int
    default: 1
  concurrency:
    description: Requests in flight at a time (at most O(requests)).
    type: int
    default: 1
  timeout:
    description: Seconds to wait for each answer.
    type: float
    default: 30
  retries:
    description: Retries per request on connection errors and HTTP 502/503/504.
    type: int
    default: 5
  retry_delay:
    description: Seconds before the first retry; doubles per retry, capped at 5 seconds.
    type: float
    default: 1
  status_code:
    description: HTTP status every answer must have.
    type: int
    default: 200
  expect:
    description:
      - >-
        One expectation per input, matched against the answer's per-input predictions - v1 the
        C(predictions) list; v2 one row per input built from the output tensors (C({output_name: value}));
        raw the C(predictions) list if present, else the answer (a list as is).
      - >-
        A mapping matches when its keys match (extra keys in the answer are fine, nested the same way);
        a list matches element by element; other values must be equal (numbers to 1e-9 relative).
        Example: C([{label: POSITIVE}, {label: NEGATIVE}]).
    type: list
    elements: raw
  expect_response:
    description: A JSON subset the whole answer must contain (same matching rules as O(expect)).
    type: raw
  slo:
    description: Latency bounds in milliseconds over the successful requests; exceeding one fails the probe.
    type: dict
    suboptions:
      p50_ms:
        description: Bound on the median latency.
        type: float
      p95_ms:
        description: Bound on the 95th percentile latency.
        type: float
      p99_ms:
        description: Bound on the 99th percentile latency.
        type: float
      max_ms:
        description: Bound on the slowest request.
        type: float
  probes:
    description:
      - Probe several models in one run instead of one - each entry gives the options that differ per model
        (O(probes[].name), O(probes[].namespace), O(probes[].url), O(probes[].model_name),
        O(probes[].protocol), O(probes[].instances), O(probes[].inputs), O(probes[].body),
        O(probes[].path), O(probes[].requests), O(probes[].expect), O(probes[].expect_response),
        O(probes[].slo)); the top-level options are the defaults of every entry. Up to O(parallel) probes
        run at once. Results are in RV(results), one per entry in their order; the module fails when any
        probe fails, naming each failed one with its reasons.
    type: list
    elements: dict
    suboptions:
      name:
        description: As O(name).
        type: str
      namespace:
        description: As O(namespace).
        type: str
      url:
        description: As O(url).
        type: str
      model_name:
        description: As O(model_name).
        type: str
      protocol:
        description: As O(protocol).
        type: str
        choices: [v1, v2, raw]
      instances:
        description: As O(instances).
        type: list
        elements: raw
      inputs:
        description: As O(inputs).
        type: list
        elements: dict
      body:
        description: As O(body).
        type: raw
      path:
        description: As O(path).
        type: str
      requests:
        description: As O(requests).
        type: int
      expect:
        description: As O(expect).
        type: list
        elements: raw
      expect_response:
        description: As O(expect_response).
        type: raw
      slo:
        description: As O(slo).
        type: dict
  parallel:
    description: With O(probes), how many probes run at once.
    type: int
    default: 4
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Validates and resolves the URL, sends nothing.
requirements:
  - requests
  - kubernetes >= 24.2.0 (to read status.url)
"""

EXAMPLES = r"""
- name: Ask the sentiment model through the ingress, without DNS
  kserve_ansible.serving.inference_probe:
    name: bert-sentiment
    namespace: models
    ingress_host: 127.0.0.1
    ingress_port: 8080
    protocol: v1
    instances: ["I love this", "This is terrible"]
    expect:
      - label: POSITIVE
      - label: NEGATIVE

- name: Open Inference Protocol, 200 requests, 8 in flight, with latency SLOs
  kserve_ansible.serving.inference_probe:
    url: http://bert-sentiment.models.example.com
    model_name: bert-sentiment
    protocol: v2
    inputs:
      - name: text
        shape: [1]
        datatype: BYTES
        data: ["I love this"]
    requests: 200
    concurrency: 8
    slo:
      p50_ms: 100
      p99_ms: 500
  register: probe

- name: Custom model's own JSON body
  kserve_ansible.serving.inference_probe:
    name: bert-sentiment
    namespace: models
    protocol: raw
    body: {"sequence": "I love this"}
    expect_response: {"label": "POSITIVE"}
    bearer_token: "{{ model_token }}"
"""

RETURN = r"""
url:
  description: URL the requests were sent to.
  returned: always
  type: str
  sample: http://127.0.0.1:8080/v1/models/bert-sentiment:predict
host_header:
  description: Host header sent (ingress mode), else null.
  returned: always
  type: str
  sample: bert-sentiment.models.127.0.0.1.sslip.io
requests:
  description: Requests sent (0 in check mode).
  returned: always
  type: int
succeeded:
  description: Requests answered with O(status_code).
  returned: unless check mode
  type: int
status_codes:
  description: Count of answers per HTTP status (C(error) - no HTTP answer).
  returned: unless check mode
  type: dict
  sample: {"200": 20}
retries:
  description: Retries needed in total (connection errors, 502/503/504).
  returned: unless check mode
  type: int
latency_ms:
  description: Latency of successful requests in milliseconds - min, p50, p90, p95, p99, max, mean.
  returned: unless check mode
  type: dict
  sample: {"min": 21.3, "p50": 27.9, "p90": 33.0, "p95": 35.2, "p99": 40.1, "max": 41.0, "mean": 28.4}
latencies_ms:
  description: Each successful request's latency in milliseconds (first 1000).
  returned: unless check mode
  type: list
  elements: float
duration:
  description: Wall time of all requests in seconds.
  returned: unless check mode
  type: float
throughput_rps:
  description: Successful requests per second of wall time.
  returned: unless check mode
  type: float
sample_response:
  description: The first successful answer (or the first answer when none succeeded).
  returned: unless check mode
  type: raw
  sample: {"predictions": [{"label": "POSITIVE", "score": 0.98}]}
predictions:
  description: Per-input predictions extracted from the sample answer (see O(expect)).
  returned: unless check mode
  type: list
failures:
  description: Why the probe failed (status codes, answer differences, SLO violations).
  returned: on failure
  type: list
  elements: str
would_send:
  description: In check mode, the request body that would be sent.
  returned: check mode
  type: raw
results:
  description:
    - With O(probes), one entry per probe, in their order - C(name), C(failed), C(msg) (when it failed) and
      the values above.
  returned: with probes
  type: list
  elements: dict
"""

import copy
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule

from ..module_utils import k8s_api
from ..module_utils.k8s_isvc import (
    KServeMissing,
    inference_service_resource,
)
from ..module_utils.probe import (
    ProbeInputError,
    build_request,
    judge,
    validate_expectations,
)
from ..module_utils.probe_http import (
    Sender,
    requests,
    resolve_target,
)

try:
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError
except ImportError:  # reported by AnsibleK8SModule
    DynamicApiError = NotFoundError = Exception


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str"},
        namespace={"type": "str", "default": "default"},
        url={"type": "str"},
        model_name={"type": "str"},
        protocol={"type": "str", "choices": ["v1", "v2", "raw"], "default": "v1"},
        instances={"type": "list", "elements": "raw"},
        inputs={"type": "list", "elements": "dict"},
        body={"type": "raw"},
        path={"type": "str"},
        headers={"type": "dict", "no_log": True},
        bearer_token={"type": "str", "no_log": True},
        ingress_host={"type": "str"},
        ingress_port={"type": "int"},
        ingress_scheme={"type": "str", "choices": ["http", "https"], "default": "http"},
        endpoint_validate_certs={"type": "bool", "default": True},
        endpoint_ca_path={"type": "path"},
        requests={"type": "int", "default": 1},
        concurrency={"type": "int", "default": 1},
        timeout={"type": "float", "default": 30},
        retries={"type": "int", "default": 5},
        retry_delay={"type": "float", "default": 1},
        status_code={"type": "int", "default": 200},
        expect={"type": "list", "elements": "raw"},
        expect_response={"type": "raw"},
        slo={
            "type": "dict",
            "options": {key: {"type": "float"} for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        },
        probes={"type": "list", "elements": "dict", "options": PROBE_OPTIONS},
        parallel={"type": "int", "default": 4},
    )
    return spec


# What a `probes` entry may set: the options that differ per model (the others are the top level's).
PROBE_OPTIONS = {
    "name": {"type": "str"},
    "namespace": {"type": "str"},
    "url": {"type": "str"},
    "model_name": {"type": "str"},
    "protocol": {"type": "str", "choices": ["v1", "v2", "raw"]},
    "instances": {"type": "list", "elements": "raw"},
    "inputs": {"type": "list", "elements": "dict"},
    "body": {"type": "raw"},
    "path": {"type": "str"},
    "requests": {"type": "int"},
    "expect": {"type": "list", "elements": "raw"},
    "expect_response": {"type": "raw"},
    "slo": {"type": "dict"},
}


class ProbeFailed(Exception):
    """One probe failed; `result` holds its return values."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result or {}


def validate_counts(params) -> None:
    if params["requests"] < 1:
        raise ProbeInputError(f"requests must be at least 1, got {params['requests']}")
    if not 1 <= params["concurrency"] <= params["requests"]:
        raise ProbeInputError(f"concurrency must be between 1 and requests ({params['requests']})")
    if params["retries"] < 0 or params["retry_delay"] < 0 or params["timeout"] <= 0:
        raise ProbeInputError("retries and retry_delay must be >= 0 and timeout > 0")
    for option, bound in (params["slo"] or {}).items():
        if bound is not None and bound <= 0:
            raise ProbeInputError(f"slo.{option} must be a positive number of milliseconds, got {bound}")


def service_url(params, client) -> str:
    """O(url), else status.url of the InferenceService (read with kubernetes.core's client, `client()`)."""
    if params["url"]:
        return params["url"]
    name, namespace = params["name"], params["namespace"]
    client = client()
    try:
        isvc = inference_service_resource(client).get(name=name, namespace=namespace).to_dict()
    except NotFoundError as exc:
        raise ProbeInputError(f"InferenceService {namespace}/{name} not found") from exc
    url = (isvc.get("status") or {}).get("url")
    if not url:
        raise ProbeInputError(
            f"InferenceService {namespace}/{name} has no status.url yet: "
            "wait for it (inference_service_wait) or give url"
        )
    return url


def probe(params, client, check_mode) -> dict:
    """One probe with `params` (the module's options): its return values; ProbeFailed when it fails."""
    try:
        validate_counts(params)
        request = build_request(
            params["protocol"],
            params["model_name"] or params["name"],
            instances=params["instances"],
            inputs=params["inputs"],
            body=params["body"],
            path=params["path"],
        )
        validate_expectations(params["expect"], request.rows)
    except ProbeInputError as exc:
        raise ProbeFailed(f"invalid probe, nothing sent: {exc}") from exc

    try:
        target = resolve_target(
            service_url(params, client),
            request.path,
            ingress_host=params["ingress_host"],
            ingress_port=params["ingress_port"],
            ingress_scheme=params["ingress_scheme"],
            validate_certs=params["endpoint_validate_certs"],
            ca_path=params["endpoint_ca_path"],
            headers=params["headers"],
            bearer_token=params["bearer_token"],
        )
    except (ProbeInputError, ValueError) as exc:
        if check_mode:
            return {
                "requests": 0,
                "url": None,
                "host_header": None,
                "would_send": request.body,
                "msg": f"check mode: nothing sent; URL unknown: {exc}",
            }
        raise ProbeFailed(f"cannot reach the model, nothing sent: {exc}") from exc
    except (k8s_api.Unreachable, DynamicApiError, KServeMissing) as exc:
        raise ProbeFailed(f"cannot read the InferenceService's URL, nothing sent: {exc}") from exc

    shown = {"url": target.url, "host_header": target.host_header}
    if check_mode:
        return {"requests": 0, "would_send": request.body, "msg": "check mode: nothing sent", **shown}

    sender = Sender(target, params["timeout"], params["retries"], params["retry_delay"])
    outcomes, wall = sender.send_all(request.body, params["requests"], params["concurrency"])
    figures, failures = judge(
        outcomes,
        wall,
        params["protocol"],
        status_code=params["status_code"],
        expect=params["expect"],
        expect_response=params["expect_response"],
        slo=params["slo"],
    )
    if failures:
        raise ProbeFailed(
            "inference probe failed:\n" + "\n".join(failures), {"failures": failures, **shown, **figures}
        )
    return {**shown, **figures}


def probe_many(module, client) -> None:
    """O(probes): each entry over the top-level options, up to O(parallel) at once; a result per entry."""
    params = module.params
    if params["parallel"] < 1:
        module.fail_json(msg=f"parallel must be at least 1, got {params['parallel']}")
    defaults = {key: value for key, value in params.items() if key not in ("probes", "parallel")}

    def one(entry):
        chosen = {**defaults, **{key: value for key, value in entry.items() if value is not None}}
        label = chosen["name"] or chosen["url"]
        try:
            return {"name": label, "failed": False, **probe(chosen, client, module.check_mode)}
        except ProbeFailed as failure:
            return {"name": label, "failed": True, "msg": str(failure), **failure.result}

    with ThreadPoolExecutor(max_workers=params["parallel"]) as pool:
        results = list(pool.map(one, params["probes"]))
    failed = [result for result in results if result["failed"]]
    if failed:
        module.fail_json(
            msg=f"{len(failed)} of {len(results)} probes failed: "
            + "; ".join(f"{result['name']}: {result['msg']}" for result in failed),
            results=results,
        )
    module.exit_json(changed=False, results=results)


def main():
    module = AnsibleK8SModule(
        module_class=AnsibleModule,
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_one_of=[("name", "url", "probes")],
        required_by={"ingress_port": "ingress_host"},
    )
    if requests is None:
        module.fail_json(msg=missing_required_lib("requests"))
    clients = []

    def client():
        """kubernetes.core's client, made once (before the probes' threads need it)."""
        if not clients:
            clients.append(k8s_api.connect(module))
        return clients[0]

    if module.params["probes"] is not None:
        if any(not (entry.get("url") or module.params["url"]) for entry in module.params["probes"]):
            try:
                client()
            except k8s_api.Unreachable as exc:
                module.fail_json(msg=f"cannot read the InferenceServices' URLs, nothing sent: {exc}")
        probe_many(module, client)
    try:
        module.exit_json(changed=False, **probe(module.params, client, module.check_mode))
    except ProbeFailed as failure:
        module.fail_json(msg=str(failure), **failure.result)


if __name__ == "__main__":
    main()
