"""The roles' own Secrets (the models role's Hugging Face token, the monitoring credentials) are written and
read with kubernetes.core, whose result and --diff show a Secret's values: every such task is no_log, which
hides its whole result, diff included, and still reports it as changed. (What our k8s_manifest_set shows of a
Secret: tests/unit/test_secret_diff.py.)"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import ROOT

KUBERNETES_CORE = ("kubernetes.core.k8s", "kubernetes.core.k8s_info")
BLOCKS = ("block", "rescue", "always")


def tasks(entries: list, no_log: bool = False):
    """(task, no_log in effect) for every task of a task file, blocks walked."""
    for entry in entries or []:
        hidden = bool(entry.get("no_log", no_log))
        if any(key in entry for key in BLOCKS):
            for key in BLOCKS:
                yield from tasks(entry.get(key), hidden)
        else:
            yield entry, hidden


def secret_tasks():
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")):
        for task, hidden in tasks(yaml.safe_load(path.read_text())):
            module = next((name for name in KUBERNETES_CORE if name in task), None)
            if module is None or task[module].get("state") == "absent":  # a deletion returns no values
                continue
            text = json.dumps(task[module])
            if '"Secret"' in text or "kind: Secret" in text or "secrets.yaml" in text:
                yield f"{path.relative_to(ROOT)}: {task['name']}", hidden


SECRET_TASKS = list(secret_tasks())


def test_the_roles_secret_tasks_are_found():
    names = [name for name, _ in SECRET_TASKS]
    assert "roles/models/tasks/present.yml: Store the Hugging Face token in its Secret" in names
    assert "roles/monitoring/tasks/apply.yml: Apply the monitoring credentials" in names
    assert "roles/monitoring/tasks/apply.yml: Read the Grafana admin Secret" in names


@pytest.mark.parametrize(("task", "hidden"), SECRET_TASKS, ids=[name for name, _ in SECRET_TASKS])
def test_a_task_that_writes_or_reads_a_secret_is_no_log(task, hidden):
    assert hidden, (
        f"{task}: kubernetes.core would show the Secret's values (result, --diff); add no_log: true"
    )
