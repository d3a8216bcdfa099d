"""What the benchmarks share: where the tools are, running a command (stop on failure), timing, load."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

from devcluster.paths import bin_dir

BIN = pathlib.Path(sys.executable).parent  # the venv's ansible-playbook, python
TOOLS = bin_dir()  # kubectl, helm, vegeta and the local cluster's programs


def run(cmd, output_tail=3000, **kwargs):
    """Run `cmd`; on failure stop the benchmark with the command and the tail of its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise SystemExit(
            f"failed: {' '.join(map(str, cmd))}\n{result.stdout[-output_tail:]}\n{result.stderr[-3000:]}"
        )
    return result


def timed(function):
    start = time.monotonic()
    function()
    return time.monotonic() - start


def load_average() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"
