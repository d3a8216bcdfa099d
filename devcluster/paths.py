"""Where the local cluster's files are: one definition of each path (and of the pinned versions)."""

from __future__ import annotations

import os
import pathlib
import re

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
VERSIONS_ENV = pathlib.Path(__file__).resolve().parent / "gotools" / "versions.env"


def cache_dir() -> pathlib.Path:
    """$KSA_CACHE (default ~/.cache/kserve-ansible): binaries, Go caches, the default cluster state."""
    return pathlib.Path(os.environ.get("KSA_CACHE", "~/.cache/kserve-ansible")).expanduser()


def bin_dir() -> pathlib.Path:
    return cache_dir() / "bin"


def gomod_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GOMODCACHE", cache_dir() / "gomod"))


def pins() -> dict[str, str]:
    """The pinned versions of devcluster/gotools/versions.env (NAME=VALUE lines)."""
    return dict(
        line.split("=", 1) for line in VERSIONS_ENV.read_text().splitlines() if re.match(r"^[A-Z_]+=", line)
    )


LOCAL_CLUSTER_VARS = "@inventory/local-cluster.yml"  # the local cluster's settings for the roles


def local_playbook_args(path: str, *extra: str, mirror, tags: str | None = None) -> list[str]:
    """`ansible-playbook`'s arguments for a playbook against the local cluster, as `make demo` runs site.yml:
    the local cluster's vars file and the upstream mirror `mirror` (tags, then `extra`, follow)."""
    tagged = ["--tags", tags] if tags else []
    return [path, "-e", LOCAL_CLUSTER_VARS, "-e", f"kserve_ansible_mirror_dir={mirror}", *tagged, *extra]
