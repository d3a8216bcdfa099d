"""docs/troubleshooting.md covers every diagnosis the readiness wait can print."""

from ansible_collections.kserve_ansible.serving.plugins.module_utils.isvc_status import HINTS

from tests.helpers import ROOT


def test_every_diagnosis_kind_is_documented():
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    missing = [kind for kind in HINTS if f"`{kind}`" not in page]
    assert not missing, f"docs/troubleshooting.md lacks a row for: {missing}"
