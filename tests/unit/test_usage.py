"""devcluster.usage: the CPU and memory a component's process tree uses, read from /proc."""

import subprocess
import sys

from devcluster import usage

BUSY_CHILD = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"


def test_a_tree_counts_its_descendants_and_their_cpu():
    parent = subprocess.Popen([sys.executable, "-c", BUSY_CHILD])
    try:
        # handshake: the child is there (the tree has two processes) before measuring
        while len(usage._trees({"t": parent.pid}, usage._snapshot())["t"]) < 2:
            assert parent.poll() is None
        [row] = usage.measure({"busy": parent.pid}, 0.5)
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
    assert (row.component, row.processes) == ("busy", 2)
    assert row.cpu_percent > 0 and row.rss_mib > 0


def test_a_component_whose_process_is_gone_uses_nothing():
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    [row] = usage.measure({"gone": int(gone.stdout)}, 0.01)
    assert (row.processes, row.cpu_percent, row.rss_mib) == (0, 0.0, 0.0)


def test_the_report_has_a_row_per_component_and_a_total():
    rows = [usage.Usage("kube-apiserver", 1, 3.0, 300.0), usage.Usage("pod-runner", 12, 5.5, 900.0)]
    lines = usage.report(rows, 60).splitlines()
    assert lines[1].split()[0] == "pod-runner"  # most CPU first
    assert lines[-1].split() == ["total", "13", "8.5", "1200"]
