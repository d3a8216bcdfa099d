#!/usr/bin/python
"""Ansible module: wait for KServe InferenceServices to be Ready for their current spec."""

DOCUMENTATION = r"""
module: inference_service_wait
short_description: Wait for a KServe InferenceService to be Ready, or explain why it is not
description:
  - Waits until the InferenceService is Ready for its B(current) spec, following it with a Kubernetes watch
    (not fixed-interval polling), so it returns as soon as the API server delivers the Ready status.
  - Ready means all of status.observedGeneration >= metadata.generation (the status is about the current spec,
    not an older one), condition C(Ready=True), condition C(PredictorReady=True) (and C(TransformerReady) /
    C(ExplainerReady) when the spec has those components), and each component's latestCreatedRevision
    equal to its latestReadyRevision.
  - The watch survives server-side window ends, dropped connections and expired resourceVersions
    (410 Gone, answered by a fresh read); the counts are returned in RV(watch).
  - While not Ready, the predictor pods (label C(serving.kserve.io/inferenceservice=NAME)), related Warning
    events and failing containers' last log lines are read every O(check_interval) seconds. Failures that
    cannot heal without a spec change are B(terminal) - invalid spec (no supporting runtime), model failed to
    load, image pull errors, C(exec format error) (image built for another CPU architecture), C(hf://)
    storageUri on KServe < 0.15, pods Unschedulable (Insufficient cpu/memory, unbound PVC), OOMKilled twice,
    a predictor Deployment the API server refuses (e.g. requests above the limits KServe defaults to).
    When O(fail_fast=true) the wait fails once a terminal failure has persisted O(terminal_grace) seconds;
    anything else (crash loops, ingress not configured yet, ...) is waited out until O(timeout).
  - On failure the message lists what Ready still waits for and a diagnosis with hints, for example
    the scheduler's C(0/1 nodes are available - 1 Insufficient cpu) message.
  - >-
    With O(names) or O(label_selector) instead of O(name), waits for many InferenceServices of O(namespace) at
    once with one watch (and one read of the namespace's pods and events per O(check_interval)): each gets
    its own result in RV(results), Ready or failed with its own diagnosis, and the wait goes on for the others
    until every one is Ready or has failed. The module fails when any is not Ready; its message names those
    and gives each one's diagnosis.
  - In check mode nothing is waited for; the module reads the InferenceService once and reports its current
    readiness (RV(ready)) without failing when it is not Ready (in a check-mode run the preceding apply did
    not happen, so waiting would only time out).
version_added: "0.1.0"
author:
  - kserve-ansible maintainers (!UNKNOWN)
options:
  name:
    description: Name of the InferenceService. Exactly one of O(name), O(names) and O(label_selector).
    type: str
  names:
    description: Names of InferenceServices of O(namespace) to wait for together (results in RV(results)).
    type: list
    elements: str
  label_selector:
    description:
      - Wait for every InferenceService of O(namespace) whose labels match (C(kubectl get -l) syntax), with
        results in RV(results). No match fails.
    type: str
  namespace:
    description: Namespace of the InferenceService(s).
    type: str
    default: default
  timeout:
    description: Seconds to wait for Ready before failing with a diagnosis.
    type: int
    default: 300
  fail_fast:
    description:
      - Fail before O(timeout) when a terminal failure (see description) has persisted O(terminal_grace)
        seconds. With V(false) the wait always runs until Ready or O(timeout).
    type: bool
    default: true
  terminal_grace:
    description:
      - Seconds a terminal failure must persist before the wait gives up early. Raise it on clusters whose
        autoscaler adds nodes for Unschedulable pods.
    type: int
    default: 15
  check_interval:
    description:
      - Seconds between reads of the pods, events and logs while not Ready (used for terminal-failure
        detection and the diagnosis only; readiness itself is event-driven).
    type: float
    default: 5
  log_lines:
    description: Last log lines of each failing container to include in the diagnosis (0 disables).
    type: int
    default: 20
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Reads the current readiness once, never waits or fails on not Ready.
requirements:
  - kubernetes >= 24.2.0
  - PyYAML >= 3.11
"""

EXAMPLES = r"""
- name: Wait for the sentiment model to serve its current spec
  kserve_ansible.serving.inference_service_wait:
    name: bert-sentiment
    namespace: models
    timeout: 600
  register: isvc

- name: Show where it is served
  ansible.builtin.debug:
    msg: "{{ isvc.url }} (predictor revision {{ isvc.revisions.predictor.latestReadyRevision }})"

- name: Wait for all the models of a team (one watch), then list what serves
  kserve_ansible.serving.inference_service_wait:
    namespace: models
    label_selector: team=search
  register: models

- name: Wait on a cluster that autoscales nodes (Unschedulable is not terminal for 5 minutes)
  kserve_ansible.serving.inference_service_wait:
    name: llm
    namespace: models
    timeout: 1200
    terminal_grace: 300
    kubeconfig: "{{ kserve_ansible_kubeconfig }}"
"""

RETURN = r"""
ready:
  description: Whether the InferenceService (with O(names) or O(label_selector), every one) is Ready for its
    current spec.
  returned: always
  type: bool
  sample: true
results:
  description:
    - With O(names) or O(label_selector), one entry per InferenceService (in the order of O(names), else by
      name) with C(name), C(namespace), C(ready), C(waiting_for), C(elapsed) and the status figures below
      (C(url), C(traffic), ...; a Ready one without C(conditions) and C(model_status)); a failed one also has
      C(msg) (its diagnosis as text), C(diagnosis), C(terminal) and C(failure_kinds). The figures below are
      then not returned at the top level; the module's message explains the first 10 failed ones in full.
  returned: with names or label_selector
  type: list
  elements: dict
  sample: [{"name": "bert", "namespace": "models", "ready": true, "waiting_for": [], "elapsed": 21.3,
            "url": "http://bert.models.example.com"}]
not_ready:
  description: With O(names) or O(label_selector), the names of the InferenceServices that are not Ready.
  returned: with names or label_selector
  type: list
  elements: str
url:
  description: status.url, the external URL (through the ingress).
  returned: when known
  type: str
  sample: http://bert-sentiment.models.127.0.0.1.sslip.io
address:
  description: status.address.url, the in-cluster URL.
  returned: when known
  type: str
  sample: http://bert-sentiment.models.svc.cluster.local
revisions:
  description: Per component (predictor, transformer, explainer) the Knative revisions from status.components.
  returned: when known
  type: dict
  sample: {"predictor": {"latestCreatedRevision": "bert-sentiment-predictor-00001",
           "latestReadyRevision": "bert-sentiment-predictor-00001",
           "latestRolledoutRevision": "bert-sentiment-predictor-00001"}}
traffic:
  description: Per component, the traffic split (revisionName, percent, latestRevision, tag).
  returned: when known
  type: dict
  sample: {"predictor": [{"revisionName": "bert-sentiment-predictor-00001", "percent": 100,
           "latestRevision": true}]}
component_urls:
  description: Per component, status.components.<component>.url.
  returned: when known
  type: dict
conditions:
  description: status.conditions as reported by KServe.
  returned: always
  type: list
  elements: dict
model_status:
  description: status.modelStatus (transitionStatus, states, lastFailureInfo, copies).
  returned: always
  type: dict
generation:
  description: metadata.generation of the InferenceService.
  returned: always
  type: int
observed_generation:
  description: status.observedGeneration (the spec generation the status describes).
  returned: always
  type: int
waiting_for:
  description: What Ready still waits for (empty when Ready).
  returned: always
  type: list
  elements: str
  sample:
    - "condition Ready=False (RevisionMissing): Configuration \"x-predictor\" has no ready Revision."
elapsed:
  description: Seconds from the start of the wait until Ready (or until failure).
  returned: unless check mode
  type: float
  sample: 12.345
watch:
  description:
    - How the watch went - events received, windows (server-side watch ends, reopened), reconnects
      (dropped connections, resumed from the last resourceVersion), relists (410 Gone, fresh read).
  returned: unless check mode
  type: dict
  sample: {"events": 3, "windows": 2, "reconnects": 0, "relists": 0}
diagnosis:
  description: On failure, one entry per finding (conditions, pods, events, log lines) with a hint.
  returned: on failure
  type: list
  elements: str
terminal:
  description: On failure, whether it failed early on a terminal failure rather than at the timeout.
  returned: on failure
  type: bool
failure_kinds:
  description:
    - On failure, the kinds of the decisive findings, e.g. unschedulable, image_pull, exec_format,
      hf_storage_uri, invalid_spec, invalid_deployment, failed_load, crash_loop, oom, ingress, condition,
      event.
  returned: on failure
  type: list
  elements: str
"""

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ..module_utils import k8s_api
from ..module_utils.k8s_isvc import (
    KServeMissing,
    WaitFailed,
    WaitManyFailed,
    WaitSettings,
    read_readiness,
    read_readiness_many,
    wait_for_inference_service,
    wait_for_inference_services,
)
from ..module_utils.k8s_watch import WatchError

try:
    from kubernetes.dynamic.exceptions import DynamicApiError
except ImportError:  # reported by AnsibleK8SModule
    DynamicApiError = Exception


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str"},
        names={"type": "list", "elements": "str"},
        label_selector={"type": "str"},
        namespace={"type": "str", "default": "default"},
        timeout={"type": "int", "default": 300},
        fail_fast={"type": "bool", "default": True},
        terminal_grace={"type": "int", "default": 15},
        check_interval={"type": "float", "default": 5},
        log_lines={"type": "int", "default": 20},
    )
    return spec


def settings_from(module) -> WaitSettings:
    params = module.params
    for option in ("timeout", "check_interval"):
        if params[option] <= 0:
            module.fail_json(msg=f"{option} must be positive, got {params[option]}")
    if params["terminal_grace"] < 0:
        module.fail_json(msg=f"terminal_grace must be >= 0, got {params['terminal_grace']}")
    return WaitSettings(
        timeout=params["timeout"],
        terminal_grace=params["terminal_grace"] if params["fail_fast"] else None,
        check_interval=params["check_interval"],
        log_lines=params["log_lines"],
    )


def main():
    module = AnsibleK8SModule(
        module_class=AnsibleModule,
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("name", "names", "label_selector")],
        required_one_of=[("name", "names", "label_selector")],
    )
    settings = settings_from(module)
    name, namespace = module.params["name"], module.params["namespace"]
    names, selector = module.params["names"], module.params["label_selector"] or ""
    try:
        client = k8s_api.connect(module)
        if name is not None:
            if module.check_mode:
                module.exit_json(changed=False, **read_readiness(client, name, namespace))
            module.exit_json(changed=False, **wait_for_inference_service(client, name, namespace, settings))
        if module.check_mode:
            module.exit_json(changed=False, **read_readiness_many(client, namespace, names, selector))
        outcome = wait_for_inference_services(client, namespace, settings, names, selector)
        module.exit_json(changed=False, **outcome)
    except (WaitFailed, WaitManyFailed) as failure:
        module.fail_json(msg=str(failure), **failure.result)
    except k8s_api.Unreachable as exc:
        module.fail_json(msg=str(exc))
    except (CoreException, WatchError, KServeMissing) as exc:
        module.fail_from_exception(exc)
    except DynamicApiError as exc:
        module.fail_json(
            msg=f"Kubernetes API error while waiting for {namespace}/{name or names or selector}: "
            f"{exc.status} {exc.summary()}"
        )


if __name__ == "__main__":
    main()
