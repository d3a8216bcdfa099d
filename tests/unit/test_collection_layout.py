"""The in-repo view of the collection kserve_ansible.serving: links to the top-level sources (no copies),
every module in the connection-settings action group, and our Python importable by its collection name, as
Ansible and Python tooling (pytest, editors with `collections/` on their path) resolve it."""

import importlib
import importlib.util
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
VIEW = ROOT / "collections" / "ansible_collections" / "kserve_ansible" / "serving"
PACKAGE = "ansible_collections.kserve_ansible.serving.plugins"
LINKS = {
    "plugins/modules": "library",
    "plugins/module_utils": "module_utils",
    "plugins/filter": "filter_plugins",
    "roles": "roles",
    "playbooks": "playbooks",
    "README.md": "README.md",
}
MODULES = sorted(p.stem for p in (ROOT / "library").glob("*.py"))
MODULE_UTILS = sorted(p.stem for p in (ROOT / "module_utils").glob("*.py"))


@pytest.mark.parametrize("inside", sorted(LINKS))
def test_the_collection_links_to_the_top_level_sources(inside):
    path = VIEW / inside
    assert path.is_symlink(), f"{path} should be a link, not a copy"
    assert path.resolve() == (ROOT / LINKS[inside]).resolve()


def test_every_module_is_in_the_connection_settings_group():
    runtime = yaml.safe_load((VIEW / "meta" / "runtime.yml").read_text())
    group = runtime["action_groups"]["k8s"]
    assert sorted(name for name in group if isinstance(name, str)) == MODULES
    extends = [entry["metadata"]["extend_group"] for entry in group if isinstance(entry, dict)]
    assert extends == [["kubernetes.core.k8s", "kubernetes.core.helm"]]


@pytest.mark.parametrize("name", MODULES)
def test_modules_import_by_their_collection_name(name):
    module = importlib.import_module(f"{PACKAGE}.modules.{name}")
    assert pathlib.Path(module.__file__).resolve() == (ROOT / "library" / f"{name}.py").resolve()
    assert f"module: {name}\n" in module.DOCUMENTATION


@pytest.mark.parametrize("name", MODULE_UTILS)
def test_module_utils_import_by_their_collection_name(name):
    module = importlib.import_module(f"{PACKAGE}.module_utils.{name}")
    assert pathlib.Path(module.__file__).resolve() == (ROOT / "module_utils" / f"{name}.py").resolve()


SOURCES = sorted([*ROOT.glob("library/*.py"), *ROOT.glob("module_utils/*.py")])
# Controller plugins beside site.yml: Ansible loads them twice, as collection plugins and as the playbook's
# adjacent plugins (a plain module named ansible.plugins.<kind>.<file>, not in a package).
ADJACENT_PLUGINS = sorted(ROOT.glob("*_plugins/*.py"))


def test_no_code_uses_the_old_module_utils_path():
    sources = [*SOURCES, *ADJACENT_PLUGINS]
    assert [str(p) for p in sources if "ansible.module_utils.kserve_ansible" in p.read_text()] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_our_python_imports_our_python_relatively(path):
    """Relative imports (`from ..module_utils.x import y` in library/, `from .x import y` in module_utils/)
    name the same file in the repository tree and in the collection (plugins/modules and
    plugins/module_utils are siblings there as library/ and module_utils/ are here), so any tool that reads
    the tree follows them; an absolute collection name resolves only with collections/ on the path."""
    assert "ansible_collections.kserve_ansible" not in path.read_text()


@pytest.mark.parametrize("path", ADJACENT_PLUGINS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_plugin_loads_as_the_playbooks_adjacent_plugin_too(path):
    """As an adjacent plugin a relative import has no package to be relative to: Ansible then skipped the
    file with a warning on every run ("Skipping plugin ... No module named 'ansible.plugins.module_utils'").
    So these import our module_utils by collection name (ansible.cfg puts collections/ on the path)."""
    kind = path.parent.name.removesuffix("_plugins")
    spec = importlib.util.spec_from_file_location(f"ansible.plugins.{kind}.{path.stem}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
