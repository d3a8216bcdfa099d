"""Every module that uses the session's cluster has its place in CLUSTER_MODULE_ORDER
(tests/cluster_plugin.py): a module left out would run first, on a cluster in a state nobody planned."""

import ast

from tests.cluster_plugin import CLUSTER_MODULE_ORDER
from tests.conftest import ROOT


def marked(path, marker: str) -> bool:
    tree = ast.parse(path.read_text())
    marks = (node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == marker)
    return any(ast.unparse(node) == f"pytest.mark.{marker}" for node in marks)


def uses_the_cluster(path) -> bool:
    """On the session's cluster: marked `cluster`, and not `private_cluster` (its own clusters)."""
    return marked(path, "cluster") and not marked(path, "private_cluster")


def test_each_cluster_module_is_ordered_once_and_each_name_is_a_module():
    modules = {path.stem: path for path in (ROOT / "tests").rglob("test_*.py")}
    cluster_modules = {name for name, path in modules.items() if uses_the_cluster(path)}
    assert sorted(cluster_modules - set(CLUSTER_MODULE_ORDER)) == []
    assert sorted(set(CLUSTER_MODULE_ORDER) - set(modules)) == []
    assert len(set(CLUSTER_MODULE_ORDER)) == len(CLUSTER_MODULE_ORDER)
