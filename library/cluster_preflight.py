#!/usr/bin/python
"""Ansible module: check that a cluster can host the KServe serving stack, before installing it."""

DOCUMENTATION = r"""
---
module: cluster_preflight
short_description: Check a cluster can host the KServe serving stack (version, CPU, memory, storage)
description:
  - Reads the API server version, the nodes and the StorageClasses, and fails with one message that lists
    every unmet requirement and what to do about it (the seed guide's Troubleshooting item 1, "pods are
    Pending", asked before anything is installed).
  - Only schedulable nodes count (not cordoned, Ready, no C(NoSchedule)/C(NoExecute) taint). Capacity is
    the nodes' allocatable CPU and memory, not what is free now, so a re-run on an installed cluster passes.
  - Read-only; runs the same in check mode.
  - With O(connection_only), only checks that the API server answers (the role C(kserve_ansible) does so once
    per run, so that no usable cluster fails with one line before any component's task).
version_added: "0.1.0"
author:
  - kserve-ansible maintainers (!UNKNOWN)
options:
  min_kubernetes_version:
    description: Oldest supported API server version (Knative Serving 1.16 refuses anything below 1.28).
    type: str
    default: "1.28.0"
  required_cpu:
    description: Allocatable CPU the schedulable nodes must have in total (Kubernetes quantity).
    type: str
    default: "7"
  required_memory:
    description: Allocatable memory the schedulable nodes must have in total (Kubernetes quantity).
    type: str
    default: 9Gi
  min_node_cpu:
    description: CPU at least one schedulable node must have (the biggest single pods need one such node).
    type: str
    default: "2"
  min_node_memory:
    description: Memory at least one schedulable node must have.
    type: str
    default: 4Gi
  require_default_storage_class:
    description: Fail when no StorageClass is marked default (needed when models are stored on PVCs).
    type: bool
    default: false
  required_architectures:
    description: CPU architectures (C(amd64), C(arm64)) that must each have at least one schedulable node.
    type: list
    elements: str
    default: []
  connection_only:
    description:
      - Only read the API server's version. Without a usable cluster the task fails with one line naming the
        API server's address (or the kubeconfig's missing context) and what failed. The other options are not
        checked.
    type: bool
    default: false
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Only reads the cluster, so a check run reports the same findings as a real one.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
requirements:
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Check the cluster before installing the serving stack
  kserve_ansible.serving.cluster_preflight:
    required_cpu: "8"
    required_memory: 12Gi
    required_architectures: [amd64]
"""

RETURN = r"""
server_version:
  description: The API server's version.
  returned: success
  type: str
  sample: v1.34.4
capacity:
  description: Schedulable nodes and their allocatable CPU and memory in total.
  returned: success, unless O(connection_only)
  type: dict
  sample: {schedulable_nodes: 3, cpu: "12", memory: 24.0Gi}
nodes:
  description: Every node, whether it counts, and why not.
  returned: success, unless O(connection_only)
  type: list
  elements: dict
  sample:
    - {name: node-1, cpu: "4", memory: 8.0Gi, architecture: amd64, schedulable: true, reason: ""}
default_storage_classes:
  description: StorageClasses marked default.
  returned: success, unless O(connection_only)
  type: list
  elements: str
problems:
  description: Every unmet requirement (the task fails when this is not empty).
  returned: always
  type: list
  elements: str
"""

import json
import traceback

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule

from ..module_utils import k8s_api, preflight

REQUIREMENTS = {
    "min_kubernetes_version": {"type": "str", "default": "1.28.0"},
    "required_cpu": {"type": "str", "default": "7"},
    "required_memory": {"type": "str", "default": "9Gi"},
    "min_node_cpu": {"type": "str", "default": "2"},
    "min_node_memory": {"type": "str", "default": "4Gi"},
    "require_default_storage_class": {"type": "bool", "default": False},
    "required_architectures": {"type": "list", "elements": "str", "default": []},
}
CONNECTION_ONLY = {"connection_only": {"type": "bool", "default": False}}


def read_version(client):
    version = client.client.request("get", "/version", serialize=False)
    return json.loads(version.data)["gitVersion"]


def read_cluster(client):
    server_version = read_version(client)
    nodes = client.resource("Node", "v1").get().to_dict()["items"]
    storage_classes = client.resource("StorageClass", "storage.k8s.io/v1").get().to_dict()["items"]
    return server_version, nodes, storage_classes


def main():
    spec = dict(AUTH_ARG_SPEC)
    spec.update(REQUIREMENTS, **CONNECTION_ONLY)
    module = AnsibleK8SModule(argument_spec=spec, supports_check_mode=True)
    requirements = {name: module.params[name] for name in REQUIREMENTS}
    try:
        for name in ("required_cpu", "required_memory", "min_node_cpu", "min_node_memory"):
            preflight.parse_quantity(requirements[name])
        preflight.parse_version(requirements["min_kubernetes_version"])
    except preflight.PreflightError as exc:
        module.fail_json(msg=f"invalid requirement: {exc}")
    try:
        client = k8s_api.connect(module)
    except k8s_api.Unreachable as exc:
        module.fail_json(msg=str(exc), problems=[str(exc)])
    try:
        if module.params["connection_only"]:
            module.exit_json(changed=False, server_version=read_version(client), problems=[])
        server_version, nodes, storage_classes = read_cluster(client)
    except Exception as exc:
        problem = k8s_api.unreachable(exc)
        if problem:
            module.fail_json(msg=str(problem), problems=[str(problem)])
        module.fail_json(
            msg=f"cannot read the cluster at {client.configuration.host}: {exc}. "
            "Check kserve_ansible_kubeconfig / kserve_ansible_context.",
            problems=[str(exc)],
            exception=traceback.format_exc(),
        )
    problems = preflight.evaluate(server_version, nodes, storage_classes, requirements)
    result = {
        "changed": False,
        "server_version": server_version,
        "capacity": preflight.totals(nodes),
        "nodes": [
            {
                **summary,
                "cpu": preflight.format_cpu(summary["cpu"]),
                "memory": preflight.format_memory(summary["memory"]),
            }
            for summary in (preflight.node_summary(node) for node in nodes)
        ],
        "default_storage_classes": preflight.default_storage_classes(storage_classes),
        "problems": problems,
    }
    if problems:
        module.fail_json(
            msg="the cluster cannot host the serving stack:\n- " + "\n- ".join(problems), **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
