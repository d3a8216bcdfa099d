"""Detached processes with their own log files, found again later by pid + start time (so a recycled pid
is never mistaken for ours), stopped with their whole process tree, and loopback port checks."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_ports() -> set[int]:
    """Every TCP port in LISTEN state on this machine (IPv4 and IPv6), read from /proc/net."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], start time [19])."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def is_running(pid: int, started: int | None = None) -> bool:
    """True when pid exists, is not a zombie, and (if given) started at `started` clock ticks."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        _reap(pid)
        return False
    return started is None or int(fields[19]) == started


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def descendants(pid: int) -> list[int]:
    """All live descendants of pid (children first), from the ppid links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Process:
    """One detached process of ours: pid, start time (clock ticks since boot) and log file."""

    name: str
    pid: int
    started: int
    log: str
    command: list[str]

    @classmethod
    def start(
        cls,
        name: str,
        command: list[str],
        log: pathlib.Path,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> Process:
        """Start command in its own session (so it outlives its starter), output appended to log."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {' '.join(command)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=cwd,
            )
        return cls(name, proc.pid, start_time(proc.pid) or 0, str(log), command)

    def running(self) -> bool:
        return is_running(self.pid, self.started)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process, its process group and every descendant; SIGKILL what is left after timeout."""
        if not self.running():
            return
        tree = [self.pid, *descendants(self.pid)]
        _signal_all(tree, self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(is_running(p) for p in tree):
            time.sleep(0.1)
        tree += [p for p in descendants(self.pid) if p not in tree]
        _signal_all(tree, self.pid, signal.SIGKILL)
        for pid in tree:
            for _ in range(50):
                if not is_running(pid):
                    break
                time.sleep(0.1)


def _signal_all(pids: list[int], group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
