"""Which local program stands for a container image (programs.yaml), and the command line it runs with.

Pure: nothing here starts a process. `resolve(container)` answers with a `Program` (what to run), a
`Fake` (a sidecar the pod can do without), or None (no local program: the pod is left to kwok).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
from dataclasses import dataclass, field

import yaml

from devcluster import paths

TABLE = pathlib.Path(__file__).resolve().parent / "programs.yaml"
VERSION_TAG = re.compile(r"^v?\d+\.\d+\.\d+([-+.].*)?$")


class ImageError(Exception):
    """The image has a local program, but not in the version it asks for (reported like ErrImagePull)."""


@dataclass(frozen=True)
class Fake:
    image: str


@dataclass(frozen=True)
class Program:
    image: str
    argv: list[str]  # the image's entrypoint, resolved to a local executable, then the container's args
    mounts: dict[str, str] = field(default_factory=dict)  # container path -> host path (image contents)
    env: dict[str, str] = field(default_factory=dict)  # added to the container's env
    standin: bool = False


def split_image(image: str) -> tuple[str, str | None]:
    """(normalised repository, tag or None), digest dropped: `kserve/agent:v1` -> docker.io/kserve/agent."""
    name = image.split("@", 1)[0]
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}"
    if name.startswith("index.docker.io/"):
        name = "docker.io/" + name.removeprefix("index.docker.io/")
    if name.startswith("docker.io/library/"):
        name = "docker.io/" + name.removeprefix("docker.io/library/")
    return name, tag


def _load_table() -> list[dict]:
    return yaml.safe_load(TABLE.read_text())["programs"]


def entry_for(image: str, table: list[dict] | None = None) -> dict | None:
    repository, _ = split_image(image)
    for entry in table if table is not None else _load_table():
        if entry.get("match") == "contains":
            if entry["repository"] in repository:
                return entry
        elif split_image(entry["repository"])[0] == repository:
            return entry
    return None


def kwok_runner_query(table: list[dict] | None = None) -> str:
    """A jq query (kwok's stage selectors run gojq) true for a pod the pod runner runs (pod_runner.plan):
    every container's image has an entry of the table (`entry_for`: first match, repository normalised as
    `split_image` does), and at least one of those entries is a program, not `fake`."""
    branches = []
    for entry in table if table is not None else _load_table():
        kind = json.dumps("fake" if entry.get("fake") else "program")
        if entry.get("match") == "contains":
            branches.append(f"($r | contains({json.dumps(entry['repository'])})) then {kind}")
        else:
            branches.append(f"$r == {json.dumps(split_image(entry['repository'])[0])} then {kind}")
    repository = (
        'sub("@.*$"; "") | sub(":[^/]*$"; "") | (split("/")[0]) as $first'
        ' | if (contains("/") | not) or (($first | test("[.:]") | not) and $first != "localhost")'
        ' then "docker.io/" + . else . end'
        ' | sub("^index[.]docker[.]io/"; "docker.io/") | sub("^docker[.]io/library/"; "docker.io/")'
    )
    entry = "if " + " elif ".join(branches) + " else null end"
    return (
        f'[.spec.containers[] | (.image // "") | ({repository}) as $r | {entry}]'
        ' | (map(. != null) | all) and (map(. == "program") | any)'
    )


def _binary(entry: dict, tag: str | None, pins: dict[str, str], bindir: pathlib.Path) -> str:
    version = tag if tag and VERSION_TAG.match(tag) else pins[entry["version"]]
    path = bindir / f"{entry['binary']}-{version}"
    if not path.exists():
        target = "kserve" if entry["binary"].startswith("kserve") else "knative-serving"
        raise ImageError(
            f"no local build of {entry['binary']} {version} (image {entry['repository']}:{tag}): "
            f"build it with `bash devcluster/gotools/build.sh {target}@{version}`"
        )
    return str(path)


def resolve(
    container: dict,
    table: list[dict] | None = None,
    pins: dict[str, str] | None = None,
    bindir: pathlib.Path | None = None,
    model_dir: str | None = None,
) -> Program | Fake | None:
    """What runs for this container, or None when nothing local stands for its image."""
    image = container.get("image", "")
    entry = entry_for(image, table)
    if entry is None:
        return None
    if entry.get("fake"):
        return Fake(image)
    _, tag = split_image(image)
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if "binary" in entry:
        executable = [
            _binary(entry, tag, pins if pins is not None else paths.pins(), bindir or paths.bin_dir())
        ]
        argv = executable + (command[1:] if command else []) + args
    elif "python" in entry:
        executable = [sys.executable, "-m", entry["python"]]
        argv = executable + args
    else:  # `executable: python`: the image is a Python interpreter, this machine's stands for it
        executable = [sys.executable]
        argv = executable + (command[1:] if command else []) + args
    if entry.get("standin"):  # the stand-in replaces the image's program, whatever its command and args
        return Program(
            image, [sys.executable, "-m", entry["python"]], {}, {"PYTHONPATH": str(paths.REPO_ROOT)}, True
        )
    known = entry.get("paths", [])
    runs_module = "python" in entry and command[:3] in (
        ["python", "-m", entry["python"]],
        ["python3", "-m", entry["python"]],
    )
    if command and command[0] not in known and not runs_module:
        raise ImageError(f"the image {image} has no program {command[0]!r} here (command {command})")
    mounts = {
        target: (model_dir or "") if source == "model" else source
        for target, source in entry.get("mounts", {}).items()
    }
    env = {"PYTHONPATH": str(paths.REPO_ROOT)} if "python" in entry else {}
    return Program(image, argv, mounts, env, bool(entry.get("standin")))


def model_dir_default(state_dir: pathlib.Path) -> str:
    return os.environ.get("KSA_SIM_MODEL_DIR") or str(state_dir / "models" / "tiny")
