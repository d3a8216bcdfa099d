"""Start and stop the local processes the monitoring tests use (sink, model server, Prometheus)."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
SINK_SCRIPT = ROOT / "roles" / "monitoring" / "files" / "cloudevents_sink.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        with contextlib.suppress(requests.RequestException):
            if ready():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


@contextlib.contextmanager
def running(argv: list[str], what: str, ready: Callable[[], bool], log: pathlib.Path, timeout: float = 120):
    """Run argv (stdout+stderr to `log`) until the block ends; `ready` polls until it answers."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_until(ready, timeout, what, process)
            yield process
        except BaseException:
            sys.stderr.write(f"--- {what} log ({log}) ---\n{log.read_text(errors='replace')[-4000:]}\n")
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Sink(NamedTuple):
    url: str
    events: pathlib.Path  # the --file
    stdout: pathlib.Path
    process: subprocess.Popen


@contextlib.contextmanager
def cloudevents_sink(workdir: pathlib.Path, *options: str) -> Iterator[Sink]:
    """The sink script as the role runs it, with `options` added; it must end with code 0 on SIGTERM (so a
    crash during the block fails)."""
    port = free_port()
    events = workdir / "events.jsonl"
    stdout = workdir / "sink.stdout"
    argv = [sys.executable, "-u", str(SINK_SCRIPT), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--file", str(events), *options]
    url = f"http://127.0.0.1:{port}"
    with stdout.open("wb") as out, stdout.with_suffix(".stderr").open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        try:
            wait_until(lambda: requests.get(f"{url}/healthz", timeout=1).ok, 30, "cloudevents sink", process)
            yield Sink(url, events, stdout, process)
            if process.poll() is None:
                process.terminate()
            assert process.wait(timeout=15) == 0, f"the sink ended with code {process.returncode}, not 0"
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
