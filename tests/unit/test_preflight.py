"""Preflight: what a user is told before installing on a cluster that cannot host the stack (no cluster)."""

from decimal import Decimal

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import preflight as p

REQUIREMENTS = {
    "min_kubernetes_version": "1.28.0",
    "required_cpu": "7",
    "required_memory": "9Gi",
    "min_node_cpu": "2",
    "min_node_memory": "4Gi",
    "require_default_storage_class": False,
    "required_architectures": [],
}


def node(name, cpu="4", memory="8Gi", arch="amd64", ready=True, unschedulable=False, taints=None):
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/arch": arch}},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


THREE_NODES = [node("n1"), node("n2"), node("n3")]  # the seed guide's cluster: 3 x (4 CPU, 8 GB)


def problems(version="v1.34.4", nodes=THREE_NODES, storage_classes=(), **overrides):
    return p.evaluate(version, nodes, list(storage_classes), {**REQUIREMENTS, **overrides})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Decimal(2)),
        ("3800m", Decimal("3.8")),
        ("16Gi", Decimal(16 * 2**30)),
        ("16384Ki", Decimal(16 * 2**20)),
        ("8G", Decimal(8 * 10**9)),
        ("1e3", Decimal(1000)),
        ("0.5", Decimal("0.5")),
    ],
)
def test_kubernetes_quantities(text, value):
    assert p.parse_quantity(text) == value


def test_garbage_quantity_is_refused():
    with pytest.raises(p.PreflightError, match="not a Kubernetes quantity"):
        p.parse_quantity("lots")


def test_the_seed_cluster_passes():
    assert problems() == []


@pytest.mark.parametrize("version", ["v1.27.9", "v1.27.3-gke.100", "1.20"])
def test_old_kubernetes_is_refused_with_the_needed_version(version):
    [problem] = problems(version=version)
    assert f"Kubernetes {version} is too old" in problem
    assert "1.28.0" in problem


@pytest.mark.parametrize("version", ["v1.28.0", "v1.29.3-gke.1093000", "v1.34.4"])
def test_supported_versions(version):
    assert problems(version=version) == []


def test_too_little_cpu_says_how_much_there_is_and_is_needed():
    [problem] = problems(nodes=[node("n1", cpu="3800m", memory="16Gi")], required_cpu="6")
    assert "3800m CPU allocatable" in problem
    assert "needs 6" in problem
    assert "Insufficient cpu" in problem


def test_too_little_memory():
    [problem] = problems(nodes=[node("n1", cpu="8", memory="8Gi")])
    assert "not enough memory" in problem
    assert "8.0Gi" in problem
    assert "9.0Gi" in problem


def test_nodes_that_cannot_take_pods_do_not_count_and_are_named():
    nodes = [
        node("small", cpu="4", memory="8Gi"),
        node("cordoned", unschedulable=True),
        node("down", ready=False),
        node("control", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
    ]
    found = problems(nodes=nodes)
    assert any("not enough CPU" in problem for problem in found)
    assert "cordoned (cordoned)" in found[0]
    assert "down (not Ready)" in found[0]
    assert "control (tainted node-role.kubernetes.io/control-plane)" in found[0]


def test_prefer_no_schedule_taints_do_not_block():
    nodes = [node(f"n{i}", taints=[{"key": "x", "effect": "PreferNoSchedule"}]) for i in range(3)]
    assert problems(nodes=nodes) == []


def test_no_schedulable_node_at_all():
    [problem] = problems(nodes=[node("n1", ready=False)])
    assert problem.startswith("no schedulable node")


def test_many_small_nodes_are_not_enough_for_the_biggest_pods():
    nodes = [node(f"n{i}", cpu="1", memory="2Gi") for i in range(10)]
    [problem] = problems(nodes=nodes)
    assert "no node is big enough" in problem


def test_architecture_requirement():
    [problem] = problems(required_architectures=["arm64"])
    assert "no schedulable arm64 node (nodes are amd64)" in problem
    assert "exec format error" in problem


def test_default_storage_class_only_when_required():
    assert problems(storage_classes=[]) == []
    [problem] = problems(require_default_storage_class=True)
    assert "no default StorageClass" in problem
    default = {"metadata": {"name": "standard", "annotations": {p.DEFAULT_STORAGE_CLASS: "true"}}}
    assert problems(storage_classes=[default], require_default_storage_class=True) == []


def test_every_problem_is_reported_at_once():
    found = problems(
        version="v1.25.0", nodes=[node("n1", cpu="1", memory="1Gi")], require_default_storage_class=True
    )
    assert len(found) == 5


def test_totals_count_schedulable_nodes_only():
    assert p.totals([*THREE_NODES, node("x", ready=False)]) == {
        "schedulable_nodes": 3,
        "cpu": "12",
        "memory": "24.0Gi",
    }


def test_module_documentation_matches_its_arguments():
    from ansible_collections.kserve_ansible.serving.plugins.modules import cluster_preflight

    from tests.unit.test_manifests import module_docs

    docs = module_docs("cluster_preflight")
    assert docs["EXAMPLES"] and docs["RETURN"]
    assert set(docs["DOCUMENTATION"]["options"]) == {
        *cluster_preflight.REQUIREMENTS,
        *cluster_preflight.CONNECTION_ONLY,
    }
