"""Start the model server as a real process, with the command its container image runs."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "model" / "Dockerfile"


def dockerfile_instruction(name: str, path: pathlib.Path = DOCKERFILE) -> list[str]:
    """Arguments of the last ``name`` instruction (exec form, a JSON array) in the Dockerfile."""
    logical_lines, current = [], ""
    for line in path.read_text().splitlines():
        if not current and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical_lines.append(current + line)
        current = ""
    found = [line.split(None, 1)[1] for line in logical_lines if line.split(None, 1)[:1] == [name.upper()]]
    if not found:
        raise AssertionError(f"no {name.upper()} in {path}")
    return json.loads(found[-1])


def container_command() -> list[str]:
    """What the image runs: ENTRYPOINT + CMD."""
    return dockerfile_instruction("ENTRYPOINT") + dockerfile_instruction("CMD")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_server_command(model_dir: str | None, http_port: int, grpc_port: int) -> list[str]:
    """The container's command run locally: ``python`` is this interpreter; local ports and the local
    model directory are appended (later flags win over the image's defaults)."""
    command = container_command()
    assert command[0] == "python", command
    local = [f"--http_port={http_port}", f"--grpc_port={grpc_port}"]
    if model_dir is not None:
        local.append(f"--model_dir={model_dir}")
    return [sys.executable, *command[1:], *local]


class ServerProcess:
    """The model server started with ``local_server_command`` plus ``extra_args``."""

    def __init__(
        self, model_dir: str | None, log_path: pathlib.Path, *extra_args: str, env: dict | None = None
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [*local_server_command(model_dir, self.port, free_port()), *extra_args]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def wait_listening(self, timeout: float = 120) -> None:
        """Until the HTTP server answers at all (liveness)."""
        self.wait_until(lambda: self.get("/").status_code == 200, timeout, "to listen")

    def wait_ready(self, model_name: str, timeout: float = 120) -> None:
        self.wait_until(
            lambda: self.get(f"/v1/models/{model_name}").status_code == 200, timeout, "to be ready"
        )

    def wait_until(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited ({self.process.returncode}) before {what}:\n{self.log()[-4000:]}"
                )
            try:
                if check():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not come {what} within {timeout}s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as Kubernetes does; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
