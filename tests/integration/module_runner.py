"""Run one of our modules the way Ansible does: `ansible-playbook` on a one-task playbook, JSON callback.

Used by the integration tests of inference_service_wait and inference_probe.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def run_module(module: str, args: dict, check: bool = False, timeout: float = 600) -> dict:
    """The task's result (with `failed`, `msg`, ...) as Ansible reports it; `module` is called by its FQCN
    (kserve_ansible.serving.<module>), the only name our modules have."""
    task = {"name": module, f"kserve_ansible.serving.{module}": args}
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yml", dir=ROOT / "tests" / "integration", delete=False
    ) as f:
        json.dump(play, f)  # JSON is YAML
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        command = [str(BIN / "ansible-playbook"), f.name, *(["--check"] if check else [])]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(f.name)
    try:  # the JSON report, between whatever notification callbacks (profile_tasks) print around it
        start = done.stdout.index("\n{") + 1 if not done.stdout.startswith("{") else 0
        report, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(
            f"ansible-playbook gave no task result:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ) from exc
