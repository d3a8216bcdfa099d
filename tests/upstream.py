"""The upstream manifests' read-only mirror (shared/upstream beside the repository, or KSA_UPSTREAM_DIR),
read at test time: never copied into the repository."""

from __future__ import annotations

import os
import pathlib

import yaml

from devcluster.cluster import REPO_ROOT

UPSTREAM_DIR = pathlib.Path(os.environ.get("KSA_UPSTREAM_DIR", REPO_ROOT.parent / "shared" / "upstream"))

# Every CustomResourceDefinition the four platforms install.
PLATFORM_CRD_FILES = (
    "cert-manager/1.16.2/cert-manager.crds.yaml",
    "net-istio/1.16.0/istio.yaml",
    "knative-serving/1.16.0/serving-crds.yaml",
    "kserve/0.14.1/kserve.yaml",
)


def documents(relative: str, kind: str | None = None) -> list[dict]:
    """The YAML documents of one mirrored file (only those of `kind` when given)."""
    docs = yaml.safe_load_all((UPSTREAM_DIR / relative).read_text())
    return [d for d in docs if d and (kind is None or d.get("kind") == kind)]


def platform_crds() -> list[dict]:
    return [crd for f in PLATFORM_CRD_FILES for crd in documents(f, "CustomResourceDefinition")]
