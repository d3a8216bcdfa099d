"""Can this cluster host the serving stack? Version, capacity and storage checks (pure logic, no cluster).

The seed's Troubleshooting #1 ("Pods are in Pending state: check the nodes have enough CPU, memory,
storage"), asked before anything is installed instead of after.
"""

import re
from decimal import Decimal

GIBIBYTE = Decimal(2**30)

DEFAULT_STORAGE_CLASS = "storageclass.kubernetes.io/is-default-class"


class PreflightError(ValueError):
    """A requirement given to the preflight check is not understood."""


def parse_quantity(text):
    """A Kubernetes quantity (`3800m`, `16Gi`, `1e3`, `2`) as a Decimal in base units (cores, bytes)."""
    # Imported here: the module reports a missing kubernetes library through kubernetes.core's own check.
    from kubernetes.utils import parse_quantity as kubernetes_quantity

    try:
        return kubernetes_quantity(str(text).strip())
    except ValueError as exc:
        raise PreflightError(f"not a Kubernetes quantity: {text!r}") from exc


def format_cpu(cores):
    return f"{cores.normalize():f}" if cores == cores.to_integral() else f"{int(cores * 1000)}m"


def format_memory(size):
    return f"{(size / GIBIBYTE).quantize(Decimal('0.1'))}Gi"


def parse_version(text):
    """(major, minor, patch) of `v1.34.4`, `1.28`, `v1.29.3-gke.1093000`."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", str(text).strip())
    if not match:
        raise PreflightError(f"not a version: {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def node_summary(node):
    """What matters about a node for scheduling the stack: capacity, architecture, schedulable or why not."""
    metadata, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    allocatable = status.get("allocatable") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    blocking = [
        t.get("key") for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")
    ]
    reason = ""
    if spec.get("unschedulable"):
        reason = "cordoned"
    elif not ready:
        reason = "not Ready"
    elif blocking:
        reason = "tainted " + ", ".join(blocking)
    return {
        "name": metadata["name"],
        "cpu": parse_quantity(allocatable.get("cpu", "0")),
        "memory": parse_quantity(allocatable.get("memory", "0")),
        "architecture": (metadata.get("labels") or {}).get("kubernetes.io/arch", "")
        or (status.get("nodeInfo") or {}).get("architecture", ""),
        "schedulable": not reason,
        "reason": reason,
    }


def default_storage_classes(storage_classes):
    return [
        sc["metadata"]["name"]
        for sc in storage_classes
        if (sc["metadata"].get("annotations") or {}).get(DEFAULT_STORAGE_CLASS) == "true"
    ]


def evaluate(server_version, nodes, storage_classes, requirements):
    """Every unmet requirement, as a sentence saying what is missing and what to do. Empty list: all good.

    `requirements`: min_kubernetes_version, required_cpu, required_memory, min_node_cpu, min_node_memory,
    require_default_storage_class, required_architectures.
    """
    problems = []
    wanted_version = parse_version(requirements["min_kubernetes_version"])
    if parse_version(server_version) < wanted_version:
        problems.append(
            f"Kubernetes {server_version} is too old: Knative Serving 1.16 needs at least "
            f"{requirements['min_kubernetes_version']}. Upgrade the cluster."
        )

    summaries = [node_summary(node) for node in nodes]
    usable = [node for node in summaries if node["schedulable"]]
    skipped = ", ".join(f"{n['name']} ({n['reason']})" for n in summaries if not n["schedulable"])
    skipped_note = f" Not counted: {skipped}." if skipped else ""
    if not usable:
        problems.append(f"no schedulable node: pods of the stack would stay Pending.{skipped_note}")
        return problems

    cpu = sum((n["cpu"] for n in usable), Decimal(0))
    memory = sum((n["memory"] for n in usable), Decimal(0))
    need_cpu = parse_quantity(requirements["required_cpu"])
    need_memory = parse_quantity(requirements["required_memory"])
    if cpu < need_cpu:
        problems.append(
            f"not enough CPU: schedulable nodes have {format_cpu(cpu)} CPU allocatable, the stack needs "
            f"{format_cpu(need_cpu)} (Knative's minimum plus Istio, cert-manager and KServe). "
            f"Add nodes or use bigger ones, or pods will stay Pending (Insufficient cpu).{skipped_note}"
        )
    if memory < need_memory:
        problems.append(
            f"not enough memory: schedulable nodes have {format_memory(memory)} allocatable, the stack needs "
            f"{format_memory(need_memory)}. Add nodes or use bigger ones, or pods will stay Pending "
            f"(Insufficient memory).{skipped_note}"
        )

    node_cpu = parse_quantity(requirements["min_node_cpu"])
    node_memory = parse_quantity(requirements["min_node_memory"])
    if not any(n["cpu"] >= node_cpu and n["memory"] >= node_memory for n in usable):
        biggest = max(usable, key=lambda n: (n["cpu"], n["memory"]))
        problems.append(
            f"no node is big enough: the biggest schedulable node ({biggest['name']}) has "
            f"{format_cpu(biggest['cpu'])} CPU and {format_memory(biggest['memory'])}, but single pods "
            f"of the stack (istiod, model servers) need a node with at least {format_cpu(node_cpu)} CPU and "
            f"{format_memory(node_memory)}."
        )

    wanted_architectures = requirements.get("required_architectures") or []
    present = {n["architecture"] for n in usable}
    missing = [arch for arch in wanted_architectures if arch not in present]
    if missing:
        found = ", ".join(sorted(present)) or "unlabelled"
        problems.append(
            f"no schedulable {'/'.join(missing)} node (nodes are {found}): "
            "images built only for that architecture fail with 'exec format error'."
        )

    if requirements.get("require_default_storage_class") and not default_storage_classes(storage_classes):
        problems.append(
            "no default StorageClass: PVCs for model storage would stay Pending. Mark one with the "
            f"annotation {DEFAULT_STORAGE_CLASS}=true or install a storage provisioner."
        )
    return problems


def totals(nodes):
    """Allocatable CPU and memory of the schedulable nodes, as the user reads them."""
    usable = [node_summary(node) for node in nodes]
    usable = [n for n in usable if n["schedulable"]]
    return {
        "schedulable_nodes": len(usable),
        "cpu": format_cpu(sum((n["cpu"] for n in usable), Decimal(0))),
        "memory": format_memory(sum((n["memory"] for n in usable), Decimal(0))),
    }
