"""Shared pytest set-up.

Tests import our shared code by the name Ansible gives it at run time
(`ansible_collections.kserve_ansible.serving.plugins.module_utils...`): `collections/` is on the pytest
path (pyproject.toml), and the in-repo collection links to `module_utils/`. No copy, no mock, no path patch.
"""

import os
import pathlib
import subprocess
import sys

import pytest
from ansible.plugins.loader import init_plugin_loader

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Ansible's collection loader, configured once, before any test imports a collection: a collection package
# imported before the loader is installed has no collection metadata, and every later import of its plugins
# through the loader (as tests that template with Ansible's own Templar install it) fails.
init_plugin_loader([str(ROOT / "collections")])

pytest_plugins = ["tests.cluster_plugin"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny DistilBERT classifier written once per session by `python -m model.tiny_model` (no download)."""
    path = tmp_path_factory.mktemp("models") / "tiny-distilbert"
    subprocess.run([sys.executable, "-m", "model.tiny_model", str(path)], cwd=ROOT, check=True, timeout=300)
    return str(path)


def pytest_sessionfinish(session, exitstatus):
    """Under CI (`CI` set, as .ci/run does) a skipped test fails the run: there a skip is coverage lost
    without anyone noticing (a missing mirror, tool or binary), not a choice."""
    if not os.environ.get("CI") or session.exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reasons = sorted({str(report.longrepr[-1]).removeprefix("Skipped: ") for report in skipped})
        reporter.ensure_newline()
        reporter.write_line(
            f"CI: {len(skipped)} skipped test(s) fail the run: " + "; ".join(reasons), red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
