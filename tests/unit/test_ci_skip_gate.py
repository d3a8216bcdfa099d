"""Under CI a skipped test fails the run (tests/conftest.py): a skip there is coverage lost silently."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def run_pytest(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n\ndef test_it():\n    pytest.skip('no tool here')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_the_run_under_ci_and_names_its_reason(tmp_path):
    result = run_pytest(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout
    assert "CI: 1 skipped test(s) fail the run: no tool here" in result.stdout


def test_a_skip_is_only_reported_outside_ci(tmp_path):
    result = run_pytest(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
