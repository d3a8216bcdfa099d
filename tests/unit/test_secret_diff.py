"""`--diff` of k8s_manifest_set never shows a Secret's values (ObjectResult.diff, what the module returns as
`diff`), and still shows which of them change."""

from __future__ import annotations

import base64
import copy

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests as m

OLD_TOKEN, NEW_TOKEN, CA = "hf_OldSecretToken123", "hf_NewSecretToken456", "-----BEGIN CERTIFICATE-----"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(**fields) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token", "namespace": "models", "resourceVersion": "7"},
        "type": "Opaque",
        **fields,
    }


LIVE = secret(data={"HF_TOKEN": b64(OLD_TOKEN), "ca.crt": b64(CA)})
# What the module sends (stringData) and what the API server answers (data, stringData merged into it).
WANTED = secret(stringData={"HF_TOKEN": NEW_TOKEN})
ANSWER = secret(data={"HF_TOKEN": b64(NEW_TOKEN), "ca.crt": b64(CA)})
VALUES = (OLD_TOKEN, NEW_TOKEN, CA, b64(OLD_TOKEN), b64(NEW_TOKEN), b64(CA))


def shown(diff: dict) -> str:
    return diff["before"] + diff["after"]


def assert_no_value_in(diff: dict) -> None:
    for value in VALUES:
        assert value not in shown(diff)
        assert value[:8] not in shown(diff)  # nor a part of one


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [
        ("updated", LIVE, ANSWER),  # a real run, or a check-mode dry-run answer
        ("updated", LIVE, WANTED),  # check mode when the dry run could not run (the object as sent)
        ("created", None, WANTED),
        ("created", None, ANSWER),
        ("deleted", LIVE, None),
        ("unchanged", LIVE, LIVE),
    ],
)
def test_a_secrets_values_never_appear_in_the_diff(action, before, after):
    assert_no_value_in(m.ObjectResult(WANTED, action, before=before, after=after).diff())


def test_a_changed_value_shows_as_a_change_of_its_key_without_the_value():
    diff = m.ObjectResult(WANTED, "updated", before=LIVE, after=ANSWER).diff()
    assert diff["before"] != diff["after"]
    assert "HF_TOKEN: <hidden>\n" in diff["before"]
    assert "HF_TOKEN: <hidden, changed>\n" in diff["after"]
    assert "ca.crt: <hidden>\n" in diff["before"] and "ca.crt: <hidden>\n" in diff["after"]  # unchanged


def test_stringdata_sent_is_compared_with_the_stored_data():
    same = m.ObjectResult(WANTED, "unchanged", before=ANSWER, after=WANTED).diff()
    assert "HF_TOKEN: <hidden>\n" in same["after"]
    changed = m.ObjectResult(WANTED, "updated", before=LIVE, after=WANTED).diff()
    assert "HF_TOKEN: <hidden, changed>\n" in changed["after"]


def test_a_secret_whose_values_stay_shows_only_what_else_changes():
    relabelled = copy.deepcopy(LIVE)
    relabelled["metadata"]["labels"] = {"team": "ml"}
    diff = m.ObjectResult(WANTED, "updated", before=LIVE, after=relabelled).diff()
    assert diff["before"].replace("HF_TOKEN", "") != diff["after"].replace("HF_TOKEN", "")
    assert "<hidden, changed>" not in diff["after"]
    assert "team: ml" in diff["after"]


def test_the_copy_kubectl_apply_keeps_in_an_annotation_is_hidden_too():
    applied_by_kubectl = copy.deepcopy(LIVE)
    applied_by_kubectl["metadata"]["annotations"] = {
        LAST_APPLIED: f'{{"data":{{"HF_TOKEN":"{b64(OLD_TOKEN)}"}}}}'
    }
    diff = m.ObjectResult(WANTED, "updated", before=applied_by_kubectl, after=ANSWER).diff()
    assert_no_value_in(diff)
    assert f"{LAST_APPLIED}: <hidden>\n" in diff["before"]


def test_a_value_change_is_still_a_change_in_check_mode():
    assert m.would_change(LIVE, ANSWER)
    assert not m.would_change(LIVE, copy.deepcopy(LIVE))


def test_other_kinds_diff_in_full():
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-domain", "namespace": "knative-serving"},
        "data": {"example.com": "selector: {}"},
    }
    diff = m.ObjectResult(config_map, "created", after=config_map).diff()
    assert "example.com: 'selector: {}'" in diff["after"]


def test_the_values_ansible_masks_in_the_result_are_the_secrets_values_as_given():
    objects = [
        WANTED,
        LIVE,
        secret(stringData={"flag": "1", "empty": ""}),
        {"kind": "ConfigMap", "data": {"a": CA}},
    ]
    assert m.secret_values(objects) == {NEW_TOKEN, b64(OLD_TOKEN), b64(CA)}  # not "1": it would mask "v1"
