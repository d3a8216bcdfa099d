"""Render the monitoring role's templates exactly as the role does, without a cluster.

The role's defaults and vars are loaded and templated by Ansible's own Templar (the engine behind
`lookup('ansible.builtin.template', ...)` in the role's tasks), so tests see the same Prometheus config,
Promtail config and manifests a playbook run applies.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.utils.collection_loader import AnsibleCollectionConfig

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"
ROLE = ROLES / "monitoring"
# Every play lists the role of the shared settings first (kserve_ansible_*: image overrides, ...).
SHARED_DEFAULTS = ROLES / "kserve_ansible" / "defaults" / "main.yml"


@functools.cache
def _load_plugins_once() -> None:
    if not AnsibleCollectionConfig.collection_finder:  # tests/conftest.py configures it under pytest
        init_plugin_loader()


def _templar(**overrides: Any) -> Templar:
    """A Templar with the shared settings' defaults, the role's defaults, then its vars, then `overrides`
    (like `-e`)."""
    _load_plugins_once()
    loader = DataLoader()
    loader.set_basedir(str(ROLE))
    variables: dict[str, Any] = {}
    for path in (SHARED_DEFAULTS, ROLE / "defaults/main.yml", ROLE / "vars/main.yml"):
        # Trusted as templates, as Ansible trusts a role's own files.
        variables.update(loader.load_from_file(str(path), trusted_as_template=True))
    variables.update(overrides)
    return Templar(loader=loader, variables=variables)


def render_template(name: str, **overrides: Any) -> str:
    """The text of roles/monitoring/templates/NAME rendered with the role's variables."""
    return _templar(**overrides).template(
        trust_as_template(f"{{{{ lookup('ansible.builtin.template', {name!r}) }}}}")
    )


def render_manifests(name: str, **overrides: Any) -> list[dict[str, Any]]:
    """The Kubernetes objects a manifest template renders to."""
    return [doc for doc in yaml.safe_load_all(render_template(name, **overrides)) if doc]


def variable(name: str, **overrides: Any) -> Any:
    """One role variable, templated (e.g. monitoring_scrape_jobs)."""
    return _templar(**overrides).template(trust_as_template(f"{{{{ {name} }}}}"))
