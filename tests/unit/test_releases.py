"""The release catalog (module_utils/releases.py) and the plugins over it, as roles and users meet them."""

import json
import pathlib

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils import releases as r

from tests.helpers import run_playbook
from tests.upstream import UPSTREAM_DIR as UPSTREAM
from tests.upstream import role_default

needs_mirror = pytest.mark.skipif(not (UPSTREAM / "index.json").is_file(), reason="no upstream mirror here")


@pytest.mark.parametrize("variable", sorted(r.VERSION_PINS))
def test_every_roles_default_pin_is_a_supported_release(variable):
    assert r.version_problem(variable, role_default(variable)) == ""


@needs_mirror
def test_the_catalog_pins_the_mirrors_files_at_the_mirror_layout():
    index = json.loads((UPSTREAM / "index.json").read_text())
    for name, component in r.CATALOG.items():
        for version, files in component.releases.items():
            for file_name, sha256 in files.items():
                assert index[name][version][file_name]["sha256"] == sha256, (name, version, file_name)
                found = r.release_file(name, version, file_name, mirror_dir=str(UPSTREAM))
                assert pathlib.Path(found.path).is_file(), found.path
            for directory, _oci in component.charts.values():
                assert (UPSTREAM / name / version / directory / "Chart.yaml").is_file()


def test_an_unknown_version_names_the_supported_ones_and_the_way_out():
    problem = r.version_problem("kserve_version", "0.99.0")
    assert problem == (
        "kserve_version=0.99.0: kserve 0.99.0 is not a supported release (supported: 0.14.1, 0.15.2, "
        "0.16.0). To run another release, declare its files and their sha256 in "
        "kserve_ansible_extra_releases."
    )


def test_kserve_releases_are_sorted_by_version_not_by_text():
    extra = {"kserve": {"0.9.0": {"kserve.yaml": "a" * 64}}}
    assert r.supported_versions("kserve", extra) == ["0.9.0", "0.14.1", "0.15.2", "0.16.0"]


@pytest.mark.parametrize(
    ("version", "has_it"),
    [
        ("0.14.1", False),
        ("0.14.99", False),
        ("0.15.0", True),
        ("0.15.2", True),
        ("0.16.0", True),
        ("v1.0.0", True),
    ],
)
def test_hf_storage_uri_is_a_feature_from_kserve_0_15_0(version, has_it):
    assert r.has_feature("kserve", version, "hf_storage_uri") is has_it


def test_features_are_known_by_name_and_versions_must_be_x_y_z():
    with pytest.raises(r.ReleaseError, match="kserve has no feature 'llm' in the catalog"):
        r.has_feature("kserve", "0.16.0", "llm")
    with pytest.raises(r.ReleaseError, match=r"not a version: '0\.15'"):
        r.has_feature("kserve", "0.15", "hf_storage_uri")


def test_knative_version_pins_knative_serving_and_net_istio():
    extra = {"knative-serving": {"1.17.0": {"serving-core.yaml": "a" * 64}}}
    assert "net-istio 1.17.0 is not a supported release" in r.version_problem(
        "knative_version", "1.17.0", extra
    )
    extra["net-istio"] = {"1.17.0": {"net-istio.yaml": "b" * 64}}
    assert r.version_problem("knative_version", "1.17.0", extra) == ""
    assert r.supported_versions("net-istio", extra) == ["1.16.0", "1.17.0"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1.16, "1.16 (float)"), ([1], "[1] (list)"), ("1.16", "'1.16'"), ("v1.16.0", "'v1.16.0'")],
)
def test_a_pin_must_be_a_version_string(value, shown):
    assert r.version_problem("knative_version", value) == (
        f'knative_version must be a version string like "1.16.0", got {shown}'
    )


def test_release_urls_and_mirror_paths():
    crds = r.release_file("knative-serving", "1.16.0", "serving-crds.yaml")
    assert (
        crds.url == "https://github.com/knative/serving/releases/download/knative-v1.16.0/serving-crds.yaml"
    )
    # the mirror's serving-crds.yaml is the published asset byte for byte: its pin verifies the download
    assert (crds.path, crds.sha256) == (
        "",
        r.CATALOG["knative-serving"].releases["1.16.0"]["serving-crds.yaml"],
    )
    mirrored = r.release_file("cert-manager", "1.16.2", "cert-manager.yaml", mirror_dir="/srv/mirror")
    assert mirrored.path == "/srv/mirror/cert-manager/1.16.2/cert-manager.yaml"
    assert mirrored.url == ""
    assert mirrored.sha256 == r.CATALOG["cert-manager"].releases["1.16.2"]["cert-manager.yaml"]
    dashboard = r.release_file("knative-monitoring", "36a2099", "grafana/knative-scaling.json")
    assert dashboard.url == (
        "https://raw.githubusercontent.com/knative-extensions/monitoring/"
        "36a2099d02e728f6255f8ef4ab7856be76f8207a/grafana/knative-scaling.json"
    )
    assert dashboard.sha256  # raw files at a commit: the pins are the published bytes, downloads verified
    # see tests/unit/test_downloads.py for the files whose published bytes are not pinned


def test_helm_charts_come_from_the_mirror_or_their_oci_reference():
    assert r.chart_ref("kserve", "kserve", "0.14.1") == "oci://ghcr.io/kserve/charts/kserve"
    assert r.chart_ref("kserve", "kserve-crd", "0.14.1", "/m") == "/m/kserve/0.14.1/charts/kserve-crd"
    with pytest.raises(r.ReleaseError, match="kserve has no chart 'nope'"):
        r.chart_ref("kserve", "nope", "0.14.1")


def test_an_unknown_component_names_the_known_ones():
    with pytest.raises(r.ReleaseError, match="unknown component 'istio'; the catalog has: cert-manager, "):
        r.release_file("istio", "1.22.2", "istio.yaml")


class TestPlaybooks:
    """The same catalog behind validate.yml (site.yml's first play) and the plugins."""

    def test_an_unsupported_pin_fails_validation_with_the_supported_releases(self):
        result = run_playbook(
            "site.yml", "-e", "cert_manager_version=1.17.0", "-e", "kserve_ansible_kubeconfig=/nonexistent"
        )
        assert result.returncode != 0
        failed = [line for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
        assert len(failed) == 1, result.stdout[-3000:]
        assert "cert-manager 1.17.0 is not a supported release (supported: 1.16.2)" in result.stdout

    @pytest.mark.parametrize("version", ["0.15.0", "0.16"])
    def test_an_unsupported_kserve_version_is_refused_before_any_task_with_the_supported_ones(self, version):
        result = run_playbook("playbooks/validate.yml", "-e", f"kserve_version={version}")
        assert result.returncode != 0
        output = " ".join(result.stdout.split())
        if version == "0.16":
            assert "kserve_version must be a version string like \"0.16.0\", got '0.16'" in output
        else:
            assert "kserve 0.15.0 is not a supported release (supported: 0.14.1, 0.15.2, 0.16.0)" in output

    @pytest.mark.parametrize("version", ["0.14.1", "0.15.2", "0.16.0"])
    def test_each_kserve_release_of_the_catalog_passes_validation(self, version):
        result = run_playbook("playbooks/validate.yml", "-e", f"kserve_version={version}")
        assert result.returncode == 0, result.stdout[-3000:]

    def test_extra_releases_make_a_pin_valid(self, tmp_path):
        settings = tmp_path / "extra.json"
        extra = {"cert-manager": {"1.17.0": {"cert-manager.yaml": "a" * 64}}}
        settings.write_text(
            json.dumps({"cert_manager_version": "1.17.0", "kserve_ansible_extra_releases": extra})
        )
        result = run_playbook("playbooks/validate.yml", "-e", f"@{settings}")
        assert result.returncode == 0, result.stdout[-3000:]

    @needs_mirror
    def test_the_lookup_reads_and_verifies_a_mirror_file(self, tmp_path):
        copy = tmp_path / "knative-monitoring" / "36a2099" / "grafana" / "knative-scaling.json"
        copy.parent.mkdir(parents=True)
        original = (
            UPSTREAM / "knative-monitoring" / "36a2099" / "grafana" / "knative-scaling.json"
        ).read_text()
        playbook = tmp_path / "read.yml"
        playbook.write_text(
            yaml.safe_dump(
                [
                    {
                        "hosts": "localhost",
                        "gather_facts": False,
                        "tasks": [
                            {
                                "ansible.builtin.debug": {
                                    "msg": "sha256 {{ lookup('kserve_ansible.serving.release_file', "
                                    "'grafana/knative-scaling.json', component='knative-monitoring', "
                                    f"version='36a2099', mirror_dir='{tmp_path}') | hash('sha256') }}}}"
                                }
                            }
                        ],
                    }
                ]
            )
        )
        copy.write_text(original)
        result = run_playbook(str(playbook))
        assert result.returncode == 0, result.stdout[-3000:]
        pinned = r.CATALOG["knative-monitoring"].releases["36a2099"]["grafana/knative-scaling.json"]
        assert f"sha256 {pinned}" in result.stdout

        copy.write_text(original.replace("Scaling", "Scalin", 1))
        result = run_playbook(str(playbook))
        assert result.returncode != 0
        assert f"checksum mismatch for {copy}: expected sha256 {pinned}" in result.stdout
