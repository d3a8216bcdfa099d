"""Small helpers shared by tests: run the project's own commands the way a user does."""

import json
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


def write_kubeconfig(path, server: str, verify: bool = True) -> str:
    """A kubeconfig at `path` for the API server at `server` (a token user; `verify=False` skips TLS
    verification), as a file path: for tests against a dead port or a local stand-in server."""
    cluster = {"server": server, **({} if verify else {"insecure-skip-tls-verify": True})}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    pathlib.Path(path).write_text(json.dumps(config))
    return str(path)


def hf_entry(index: int) -> dict:
    """A models-role entry: a Hugging Face InferenceService `hf-NNN` with requests small enough for 100 of
    them on the local cluster's nodes (the many-models test and bench/many_models.py)."""
    return {
        "name": f"hf-{index:03d}",
        "model_format": "huggingface",
        "protocol_version": "v2",
        "model_id": "distilbert-base-uncased-finetuned-sst-2-english",
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"cpu": "100m", "memory": "128Mi"},
        },
    }
