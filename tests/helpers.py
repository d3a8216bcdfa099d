"""Small helpers shared by tests: run the project's own commands the way a user does."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent


def run_playbook(*args, kubeconfig=None, check=False, timeout=900, env=None):
    """Run `ansible-playbook` from the repo root and return the CompletedProcess (never raises on failure)."""
    cmd = [str(BIN / "ansible-playbook"), *args]
    if kubeconfig:
        cmd += ["-e", f"kserve_ansible_kubeconfig={kubeconfig}"]
    if check:
        cmd.append("--check")
    full_env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        **(env or {}),
    }
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    return subprocess.run(
        cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def recap(output):
    """Parse the PLAY RECAP line for localhost into a dict of counters (ok, changed, failed, ...)."""
    for line in output.splitlines():
        if line.startswith("localhost") and "ok=" in line:
            return {k: int(v) for k, v in (item.split("=") for item in line.split(":", 1)[1].split())}
    raise AssertionError(f"no PLAY RECAP in output:\n{output[-3000:]}")
