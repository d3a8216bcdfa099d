"""Shared pytest set-up.

`module_utils/` is put on `ansible.module_utils`' package path, so tests import our shared code exactly as
Ansible does at run time (`ansible.module_utils.kserve_ansible...`), with no copy and no mock.
"""

import pathlib
import subprocess
import sys

import ansible.module_utils
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_MODULE_UTILS = str(ROOT / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

pytest_plugins = ["tests.cluster_plugin"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny DistilBERT classifier written once per session by `python -m model.tiny_model` (no download)."""
    path = tmp_path_factory.mktemp("models") / "tiny-distilbert"
    subprocess.run([sys.executable, "-m", "model.tiny_model", str(path)], cwd=ROOT, check=True, timeout=300)
    return str(path)
