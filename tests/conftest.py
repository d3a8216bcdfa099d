"""Shared pytest set-up.

Tests import our shared code by the name Ansible gives it at run time
(`ansible_collections.kserve_ansible.serving.plugins.module_utils...`): `collections/` is on the pytest
path (pyproject.toml), and the in-repo collection links to `module_utils/`. No copy, no mock, no path patch.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.cluster_plugin"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny DistilBERT classifier written once per session by `python -m model.tiny_model` (no download)."""
    path = tmp_path_factory.mktemp("models") / "tiny-distilbert"
    subprocess.run([sys.executable, "-m", "model.tiny_model", str(path)], cwd=ROOT, check=True, timeout=300)
    return str(path)
