"""A container's first process in the local cluster: run by the pod runner inside the pod's network namespace
and a private mount namespace (`ip netns exec NS unshare --mount --propagation private python -m
devcluster.podinit SPEC`), it bind-mounts the pod's materialised volumes at their mountPaths, enters the
working directory and replaces itself with the container's program (same pid, so signals reach it).

SPEC is a JSON file: {"argv": [...], "env": {...}, "cwd": "...", "mounts": [[source, target, read_only]]}.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys


def mount(source: str, target: str, read_only: bool) -> None:
    src, dst = pathlib.Path(source), pathlib.Path(target)
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.touch()
    subprocess.run(["mount", "--bind", source, target], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


def main(argv: list[str]) -> None:
    spec = json.loads(pathlib.Path(argv[1]).read_text())
    # Shortest targets first, so a volume mounted inside another one's path lands on top of it.
    for source, target, read_only in sorted(spec["mounts"], key=lambda m: len(m[1])):
        mount(source, target, read_only)
    os.chdir(spec.get("cwd") or "/")
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv)
