"""The upstream manifests' read-only mirror (shared/upstream beside the repository, or KSA_UPSTREAM_DIR),
read at test time: never copied into the repository."""

from __future__ import annotations

import os
import pathlib

import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils.releases import mirror_path

from devcluster.cluster import REPO_ROOT

# The one setting for where the mirror is: every test reads it from here.
UPSTREAM_DIR = pathlib.Path(os.environ.get("KSA_UPSTREAM_DIR", REPO_ROOT.parent / "shared" / "upstream"))


def role_default(variable: str):
    """The default of a role's version pin (kserve_version: roles/kserve/defaults/main.yml)."""
    defaults = REPO_ROOT / "roles" / variable.removesuffix("_version") / "defaults" / "main.yml"
    return yaml.safe_load(defaults.read_text())[variable]


def default_release_path(component: str, version_variable: str, *parts: str) -> pathlib.Path:
    """A file of a component's release in the mirror, at its role's default version (catalog layout)."""
    return UPSTREAM_DIR / mirror_path("", component, role_default(version_variable), *parts)


# Every CustomResourceDefinition the four platforms install, at the roles' default releases.
PLATFORM_CRD_FILES = (
    mirror_path("", "cert-manager", role_default("cert_manager_version"), "cert-manager.crds.yaml"),
    mirror_path("", "net-istio", role_default("istio_version"), "istio.yaml"),
    mirror_path("", "knative-serving", role_default("knative_version"), "serving-crds.yaml"),
    mirror_path("", "kserve", role_default("kserve_version"), "kserve.yaml"),
)


def documents(relative: str, kind: str | None = None) -> list[dict]:
    """The YAML documents of one mirrored file (only those of `kind` when given)."""
    docs = yaml.safe_load_all((UPSTREAM_DIR / relative).read_text())
    return [d for d in docs if d and (kind is None or d.get("kind") == kind)]


def platform_crds() -> list[dict]:
    return [crd for f in PLATFORM_CRD_FILES for crd in documents(f, "CustomResourceDefinition")]
