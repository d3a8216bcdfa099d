"""The simulator's "kubelet" for our own model server: a predictor revision whose image is our model image
runs as a local `python -m model.server` process with the container's args, `/mnt/models` mapped to a
local directory, and its own free loopback ports instead of 8080/8081."""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests

from devcluster.processes import Process, free_port, start_time

log = logging.getLogger("simulator.predictors")
CONTAINER_MODEL_DIR = "/mnt/models"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def local_args(container_args: list[str], model_dir: str, model_name: str, http_port: int, grpc_port: int):
    """The container's args for a local run: /mnt/models -> model_dir, our ports, a model name."""
    args: list[str] = []
    skip_value = False
    for arg in container_args:
        if skip_value:  # the value of a removed "--http_port VALUE" pair
            skip_value = False
        elif arg in ("--http_port", "--grpc_port"):
            skip_value = True
        elif not arg.startswith(("--http_port=", "--grpc_port=")):
            args.append(arg.replace(CONTAINER_MODEL_DIR, model_dir))
    if not any(a.startswith("--model_name") for a in args):
        args.append(f"--model_name={model_name}")
    if not any(a.startswith(("--model_dir", "--model_id")) for a in args):
        args.append(f"--model_dir={model_dir}")
    return [*args, f"--http_port={http_port}", f"--grpc_port={grpc_port}"]


@dataclass
class LocalPredictor:
    """One revision's local model server."""

    revision: str
    process: Process
    port: int
    ready: bool = False
    exit_code: int | None = None
    log_tail: str = ""
    started_at: float = field(default_factory=time.monotonic)


class LocalPredictors:
    """Starts, watches and stops the local model servers; `on_change(namespace, isvc)` is called when one
    becomes ready or exits."""

    def __init__(self, state_dir: pathlib.Path, on_change, default_model_dir: str | None = None):
        self.state_dir = state_dir
        self.on_change = on_change
        self.default_model_dir = default_model_dir or os.environ.get("KSA_SIM_MODEL_DIR")
        self._running: dict[tuple[str, str], LocalPredictor] = {}
        self._owners: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._tiny_model_lock = threading.Lock()
        self._making_tiny_model: threading.Thread | None = None
        threading.Thread(target=self._watch_loop, name="local-predictors", daemon=True).start()

    def get(self, namespace: str, revision: str) -> LocalPredictor | None:
        with self._lock:
            return self._running.get((namespace, revision))

    def model_dir(self, annotation: str | None) -> str | None:
        """Where /mnt/models points: the ISVC's annotation, else KSA_SIM_MODEL_DIR, else a tiny model made
        once with `python -m model.tiny_model` in the background (None until it is there)."""
        if annotation:
            return annotation
        if self.default_model_dir:
            return self.default_model_dir
        path = self.state_dir / "models" / "tiny"
        if (path / "config.json").exists():
            return str(path)
        with self._tiny_model_lock:
            if self._making_tiny_model is None:
                self._making_tiny_model = threading.Thread(
                    target=self._make_tiny_model, args=(path,), name="tiny-model", daemon=True
                )
                self._making_tiny_model.start()
        return None

    def _make_tiny_model(self, path: pathlib.Path) -> None:
        log.info("making a tiny model in %s", path)
        done = subprocess.run(
            [sys.executable, "-m", "model.tiny_model", str(path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            log.error("python -m model.tiny_model failed: %s", done.stderr[-2000:])
        self.on_change("", "")  # everything waiting for it is looked at again

    def ensure(
        self, namespace: str, isvc: str, revision: str, container: dict, model_dir: str
    ) -> LocalPredictor:
        key = (namespace, revision)
        with self._lock:
            existing = self._running.get(key)
            if existing:
                return existing
        http_port, grpc_port = free_port(), free_port()
        args = local_args(container.get("args", []), model_dir, isvc, http_port, grpc_port)
        env = {e["name"]: str(e.get("value", "")) for e in container.get("env", []) if "value" in e}
        env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        logfile = self.state_dir / "logs" / "predictors" / f"{namespace}_{revision}.log"
        proc = _start_child([sys.executable, "-m", "model.server", *args], logfile, env, revision)
        predictor = LocalPredictor(revision, proc, http_port)
        with self._lock:
            self._running[key] = predictor
            self._owners[key] = isvc
        log.info("started local predictor %s/%s (pid %d, port %d)", namespace, revision, proc.pid, http_port)
        self.on_change(namespace, isvc)  # its pods are not ready until it is
        return predictor

    def stop(self, namespace: str, revision: str) -> None:
        with self._lock:
            predictor = self._running.pop((namespace, revision), None)
            self._owners.pop((namespace, revision), None)
        if predictor:
            predictor.process.stop(timeout=5)
            log.info("stopped local predictor %s/%s", namespace, revision)

    def revisions(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._running)

    def stop_all(self) -> None:
        for namespace, revision in self.revisions():
            self.stop(namespace, revision)

    def _watch_loop(self) -> None:
        """Every half second: a starting server that answers ready, or a server that exited, is news."""
        while True:
            time.sleep(0.5)
            with self._lock:
                items = list(self._running.items())
            for (namespace, _), predictor in items:
                changed = False
                code = _exit_code(predictor.process.pid)
                if predictor.exit_code is None and code is not None:
                    predictor.exit_code = code
                    predictor.log_tail = predictor.process.log_tail(10)
                    predictor.ready = False
                    changed = True
                elif predictor.exit_code is None and not predictor.ready:
                    try:
                        response = requests.get(
                            f"http://127.0.0.1:{predictor.port}/v2/health/ready", timeout=1
                        )
                        predictor.ready = response.status_code == 200
                        changed = predictor.ready
                    except requests.RequestException:
                        pass
                if changed:
                    self.on_change(namespace, self._owners.get((namespace, predictor.revision), ""))


_children: dict[int, subprocess.Popen] = {}


def _start_child(command: list[str], logfile: pathlib.Path, env: dict[str, str], name: str) -> Process:
    """A child in the simulator's process group (so stopping the simulator's tree stops it too)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
        )
    _children[popen.pid] = popen
    return Process(name, popen.pid, start_time(popen.pid) or 0, str(logfile), command)


def _exit_code(pid: int) -> int | None:
    """None while the child runs; its exit code after (killed by signal N: 128+N, like a container)."""
    popen = _children.get(pid)
    code = popen.poll() if popen else 1
    if code is None:
        return None
    return code if code >= 0 else 128 - code
