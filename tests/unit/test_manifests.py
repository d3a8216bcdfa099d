"""The manifest set logic: what gets applied, in which order, with which settings (no cluster)."""

import hashlib
import json
import pathlib
import re
from typing import ClassVar

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests as m
from ansible_collections.kserve_ansible.serving.plugins.module_utils.releases import (
    mirror_path,
    supported_versions,
)

from tests.upstream import UPSTREAM_DIR

UPSTREAM = UPSTREAM_DIR

TWO_DOCS = b"""\
# a comment before the first document
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: ns}
---
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Secret, metadata: {name: s, namespace: ns}}
"""


def no_fetch(url):
    raise AssertionError(f"unexpected download of {url}")


def source_file(tmp_path, content, name="file.yaml", sha256=None, **kwargs):
    path = tmp_path / name
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest() if sha256 is None else sha256
    return m.ManifestSource(path=str(path), sha256=digest, **kwargs)


def obj(kind, name, namespace=None, api_version="v1", labels=None):
    metadata = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


CRD = obj("CustomResourceDefinition", "gateways.networking.istio.io", api_version="apiextensions.k8s.io/v1")
GATEWAY = obj(
    "Gateway", "knative-ingress-gateway", "knative-serving", api_version="networking.istio.io/v1beta1"
)
WEBHOOK = obj(
    "ValidatingWebhookConfiguration", "config.webhook", api_version="admissionregistration.k8s.io/v1"
)
NAMESPACE = obj("Namespace", "knative-serving")
DEPLOYMENT = obj("Deployment", "controller", "knative-serving", api_version="apps/v1")


class TestDocuments:
    def test_empty_documents_are_skipped_and_lists_flattened(self):
        objects = m.parse_documents(TWO_DOCS, "two.yaml")
        assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("ConfigMap", "a"), ("Secret", "s")]

    def test_a_document_without_a_name_is_an_error_naming_the_file(self):
        with pytest.raises(m.ManifestError, match=r"bad\.yaml: ConfigMap without metadata\.name"):
            m.parse_documents(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "bad.yaml")

    def test_invalid_yaml_names_the_file(self):
        with pytest.raises(m.ManifestError, match=r"broken\.yaml: not valid YAML"):
            m.parse_documents(b"a: [unclosed\n", "broken.yaml")

    def test_generate_name_objects_are_kept_and_recognised(self):
        job = m.parse_documents(
            b"apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: migrate-}\n", "j"
        )[0]
        assert m.is_generated_name(job)
        assert m.describe(job) == "Job migrate-*"


class TestOrder:
    def test_namespaces_and_crds_first_webhooks_last(self):
        phases = m.apply_phases([WEBHOOK, DEPLOYMENT, GATEWAY, CRD, NAMESPACE])
        assert phases == [[CRD, NAMESPACE], [DEPLOYMENT, GATEWAY], [WEBHOOK]]

    def test_a_custom_kind_named_namespace_is_not_a_namespace(self):
        custom = obj("Namespace", "x", api_version="example.com/v1")
        assert m.phase_of(custom) == 1

    def test_deletion_is_the_reverse_of_apply(self):
        order = m.deletion_order([NAMESPACE, CRD, DEPLOYMENT, GATEWAY, WEBHOOK])
        assert order == [WEBHOOK, GATEWAY, DEPLOYMENT, CRD, NAMESPACE]

    def test_duplicates_are_applied_once_last_definition_wins_first_position_kept(self):
        newer = {**CRD, "spec": {"v": 2}}
        assert m.dedupe([CRD, DEPLOYMENT, newer]) == [newer, DEPLOYMENT]


class TestSelector:
    LABELS: ClassVar[dict] = {"knative.dev/crd-install": "true", "app": "istiod"}

    @pytest.mark.parametrize(
        ("selector", "matches"),
        [
            ("knative.dev/crd-install=true", True),
            ("knative.dev/crd-install==true", True),
            ("knative.dev/crd-install=false", False),
            ("app!=istiod", False),
            ("missing!=x", True),
            ("app in (istiod, pilot)", True),
            ("app notin (istiod)", False),
            ("app,knative.dev/crd-install", True),
            ("!app", False),
            ("!missing", True),
            ("app=istiod,missing", False),
            ("", True),
        ],
    )
    def test_kubectl_selector_syntax(self, selector, matches):
        assert m.selector_matches(m.parse_label_selector(selector), self.LABELS) is matches

    def test_invalid_selector_is_an_error(self):
        with pytest.raises(m.ManifestError, match="invalid label selector"):
            m.parse_label_selector("a=b=c")

    def test_filter_keeps_only_matching_objects(self):
        crd = obj("CustomResourceDefinition", "x", labels={"knative.dev/crd-install": "true"})
        requirements = m.parse_label_selector("knative.dev/crd-install=true")
        assert m.filter_by_selector([crd, DEPLOYMENT], requirements) == [crd]


class TestChecksum:
    def test_matching_file_loads(self, tmp_path):
        objects = m.load_manifest_set([source_file(tmp_path, TWO_DOCS)], [], no_fetch)
        assert len(objects) == 2

    def test_mismatch_names_the_file_and_both_digests(self, tmp_path):
        source = source_file(tmp_path, TWO_DOCS, name="serving-core.yaml", sha256="0" * 64)
        with pytest.raises(
            m.ChecksumMismatch, match=r"serving-core\.yaml.*expected sha256 0{64}, got [0-9a-f]{64}"
        ):
            m.load_manifest_set([source], [], no_fetch)

    def test_every_file_is_verified_before_any_is_parsed(self, tmp_path):
        broken_but_listed_first = source_file(tmp_path, b"a: [unclosed\n", name="first.yaml")
        wrong = source_file(tmp_path, TWO_DOCS, name="second.yaml", sha256="1" * 64)
        with pytest.raises(m.ChecksumMismatch, match=r"second\.yaml"):
            m.load_manifest_set([broken_but_listed_first, wrong], [], no_fetch)

    def test_no_pinned_checksum_means_no_check(self, tmp_path):
        assert m.load_manifest_set([source_file(tmp_path, TWO_DOCS, sha256="")], [], no_fetch)

    def test_missing_file_is_named(self, tmp_path):
        with pytest.raises(m.ManifestError, match=r"manifest file not found: .*nope\.yaml"):
            m.load_manifest_set([m.ManifestSource(path=str(tmp_path / "nope.yaml"))], [], no_fetch)

    def test_urls_go_through_the_fetcher(self):
        source = m.ManifestSource(
            url="https://example.invalid/x.yaml", sha256=hashlib.sha256(TWO_DOCS).hexdigest()
        )
        assert len(m.load_manifest_set([source], [], lambda url: TWO_DOCS)) == 2

    @pytest.mark.parametrize("kwargs", [{}, {"url": "u", "path": "p"}, {"path": "p", "sha256": "abc"}])
    def test_bad_source_definitions(self, kwargs):
        with pytest.raises(m.ManifestError):
            m.ManifestSource(**kwargs)


class TestPatches:
    CONFIG: ClassVar[dict] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
        "data": {"ingress": json.dumps({"ingressDomain": "example.com", "urlScheme": "http"}), "other": "x"},
    }

    def patch(self, merge):
        return {"kind": "ConfigMap", "name": "inferenceservice-config", "namespace": "kserve", "merge": merge}

    def test_dict_merges_into_json_held_in_a_string(self):
        [patched] = m.apply_patches(
            [self.CONFIG], [self.patch({"data": {"ingress": {"ingressDomain": "d.io"}}})]
        )
        assert json.loads(patched["data"]["ingress"]) == {"ingressDomain": "d.io", "urlScheme": "http"}
        assert patched["data"]["other"] == "x"
        assert json.loads(self.CONFIG["data"]["ingress"])["ingressDomain"] == "example.com", "input untouched"

    def test_plain_values_replace_and_none_removes(self):
        [patched] = m.apply_patches([self.CONFIG], [self.patch({"data": {"other": None, "new.example": ""}})])
        assert "other" not in patched["data"]
        assert patched["data"]["new.example"] == ""

    def test_merging_a_dict_into_a_non_json_string_is_an_error(self):
        with pytest.raises(m.ManifestError, match=r"data\.other is a string, not a JSON object"):
            m.apply_patches([self.CONFIG], [self.patch({"data": {"other": {"a": 1}}})])

    def test_patch_naming_no_object_is_an_error(self):
        with pytest.raises(
            m.ManifestError, match="patch target ConfigMap kserve/nope is not in the manifests"
        ):
            m.apply_patches(
                [self.CONFIG], [{"kind": "ConfigMap", "name": "nope", "namespace": "kserve", "merge": {}}]
            )


class TestClusterAnswers:
    def deployment(self, generation=2, observed=2, replicas=3, updated=3, available=3, total=3):
        return {
            "metadata": {"generation": generation},
            "spec": {"replicas": replicas},
            "status": {
                "observedGeneration": observed,
                "updatedReplicas": updated,
                "availableReplicas": available,
                "replicas": total,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "False",
                        "message": "Deployment does not have minimum availability.",
                    }
                ],
            },
        }

    def test_rolled_out_deployment(self):
        assert m.deployment_progress(self.deployment())[0]

    @pytest.mark.parametrize(
        "change",
        [{"observed": 1}, {"updated": 2}, {"available": 2}, {"total": 4}],
        ids=["old", "updating", "unavailable", "surge"],
    )
    def test_deployment_not_rolled_out(self, change):
        done, summary = m.deployment_progress(self.deployment(**change))
        assert not done
        assert "minimum availability" in summary

    def test_crd_established(self):
        crd = {"status": {"conditions": [{"type": "Established", "status": "True"}]}}
        assert m.crd_established(crd)
        assert not m.crd_established({"status": {}})

    def test_would_change_ignores_server_bookkeeping(self):
        live = {
            "metadata": {
                "name": "a",
                "resourceVersion": "1",
                "managedFields": [{"manager": "x", "time": "t1"}],
            },
            "data": {},
        }
        dry_run = {
            "metadata": {
                "name": "a",
                "resourceVersion": "1",
                "managedFields": [{"manager": "x", "time": "t2"}],
            },
            "data": {},
        }
        assert not m.would_change(live, dry_run)
        assert m.would_change(live, {**dry_run, "data": {"k": "v"}})
        assert m.would_change(None, dry_run)


class TestUpstreamFiles:
    """The real release files behave as the roles expect (read from the mirror, never copied)."""

    def index(self):
        return json.loads((UPSTREAM / "index.json").read_text())

    def mirror_source(self, component, version, name, **kwargs):
        sha = self.index()[component][version][name]["sha256"]
        path = mirror_path(str(UPSTREAM), component, version, name)
        return m.ManifestSource(path=path, sha256=sha, **kwargs)

    def test_knative_crds_are_not_applied_twice(self):
        crds = self.mirror_source("knative-serving", "1.16.0", "serving-crds.yaml")
        core = self.mirror_source("knative-serving", "1.16.0", "serving-core.yaml")
        objects = m.load_manifest_set([crds, core], [], no_fetch)
        assert len(objects) == 59  # 12 CRDs shared by both files
        first = m.apply_phases(objects)[0]
        assert {o["kind"] for o in first} == {"Namespace", "CustomResourceDefinition"}
        assert len(first) == 13

    def test_the_seeds_crd_install_selector_matches_no_object_of_istio_yaml(self):
        """The seed's `kubectl apply -l knative.dev/crd-install=true -f istio.yaml` selects nothing."""
        istio = self.mirror_source(
            "net-istio", "1.16.0", "istio.yaml", label_selector="knative.dev/crd-install=true"
        )
        assert m.load_manifest_set([istio], [], no_fetch) == []

    def test_the_crd_install_selector_picks_knatives_crds(self):
        core = self.mirror_source(
            "knative-serving", "1.16.0", "serving-core.yaml", label_selector="knative.dev/crd-install=true"
        )
        objects = m.load_manifest_set([core], [], no_fetch)
        assert len(objects) == 12
        assert {o["kind"] for o in objects} == {"CustomResourceDefinition"}

    def test_kserve_config_takes_the_users_settings(self):
        kserve = self.mirror_source("kserve", "0.14.1", "kserve.yaml")
        patch = {
            "kind": "ConfigMap",
            "name": "inferenceservice-config",
            "namespace": "kserve",
            "merge": {
                "data": {
                    "ingress": {"ingressDomain": "127.0.0.1.sslip.io"},
                    "deploy": {"defaultDeploymentMode": "RawDeployment"},
                }
            },
        }
        objects = m.load_manifest_set([kserve], [patch], no_fetch)
        [config] = [o for o in objects if o["metadata"]["name"] == "inferenceservice-config"]
        assert json.loads(config["data"]["ingress"])["ingressDomain"] == "127.0.0.1.sslip.io"
        assert (
            json.loads(config["data"]["ingress"])["ingressGateway"]
            == "knative-serving/knative-ingress-gateway"
        )
        assert json.loads(config["data"]["deploy"]) == {"defaultDeploymentMode": "RawDeployment"}

    def test_post_install_jobs_use_generate_name(self):
        jobs = m.load_manifest_set(
            [self.mirror_source("knative-serving", "1.16.0", "serving-post-install-jobs.yaml")], [], no_fetch
        )
        assert jobs and all(m.is_generated_name(job) for job in jobs)


class TestReleaseFiles:
    """`name` sources: files of a catalog release, from a mirror (verified one by one) or the release URL."""

    def test_mirror_file_takes_its_pinned_checksum(self, tmp_path):
        path = tmp_path / "kserve" / "0.14.1" / "kserve.yaml"
        path.parent.mkdir(parents=True)
        path.write_bytes(TWO_DOCS)
        source = m.ManifestSource.from_params(
            {"name": "kserve.yaml"}, mirror_dir=str(tmp_path), component="kserve", version="0.14.1"
        )
        assert source.path == str(path)
        with pytest.raises(m.ChecksumMismatch, match=r"kserve\.yaml"):
            m.load_manifest_set([source], [], no_fetch)

    def test_a_file_the_release_does_not_pin_is_refused(self, tmp_path):
        with pytest.raises(m.ManifestError, match=r"kserve 0\.14\.1 has no pinned file 'extra\.yaml'"):
            m.ManifestSource.from_params(
                {"name": "extra.yaml"}, mirror_dir=str(tmp_path), component="kserve", version="0.14.1"
            )

    def test_an_unknown_release_is_refused_with_the_supported_ones(self):
        assert "0.14.1" in supported_versions("kserve")
        supported = re.escape(", ".join(supported_versions("kserve")))
        with pytest.raises(
            m.ManifestError, match=rf"kserve 9\.9\.9 is not a supported release \(supported: {supported}\)"
        ):
            m.ManifestSource.from_params({"name": "kserve.yaml"}, component="kserve", version="9.9.9")

    def test_without_mirror_the_release_url_is_used(self):
        source = m.ManifestSource.from_params(
            {"name": "serving-core.yaml"}, component="knative-serving", version="1.16.0"
        )
        assert (
            source.url
            == "https://github.com/knative/serving/releases/download/knative-v1.16.0/serving-core.yaml"
        )
        assert source.sha256 == "1f55c6b02bbea20ffe7c203811ae8dfd238ead7caca1f2e76275b239dfd06206"  # verified

    def test_a_source_may_name_its_own_component_and_version(self, tmp_path):
        own = {"name": "net-istio.yaml", "component": "net-istio", "version": "1.16.0"}
        source = m.ManifestSource.from_params(own, mirror_dir=str(tmp_path), component="knative-serving")
        assert source.path == str(tmp_path / "net-istio" / "1.16.0" / "net-istio.yaml")
        assert source.sha256 == "f9bada57c125f0afeb943067e8ef8105d572040573bd58cb75b19f040f58a6d8"

    def test_extra_releases_add_a_release_with_its_checksums(self, tmp_path):
        extra = {"kserve": {"0.15.2": {"kserve.yaml": "C" * 64}}}
        source = m.ManifestSource.from_params(
            {"name": "kserve.yaml"},
            mirror_dir=str(tmp_path),
            extra_releases=extra,
            component="kserve",
            version="0.15.2",
        )
        assert (source.path, source.sha256) == (str(tmp_path / "kserve" / "0.15.2" / "kserve.yaml"), "c" * 64)

    def test_a_release_file_needs_a_component_and_a_version(self):
        with pytest.raises(
            m.ManifestError, match=r"kserve\.yaml: a release file needs a component and a version"
        ):
            m.ManifestSource.from_params({"name": "kserve.yaml"}, component="kserve")


def module_docs(name):
    """DOCUMENTATION, EXAMPLES and RETURN of one of our modules, parsed as ansible-doc does."""
    import ast

    import yaml

    tree = ast.parse((pathlib.Path(__file__).parents[2] / "library" / f"{name}.py").read_text())
    found = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", "") in ("DOCUMENTATION", "EXAMPLES", "RETURN")
    }
    return {key: yaml.safe_load(text) for key, text in found.items()}


def test_module_documentation_matches_its_arguments():
    import importlib

    docs = module_docs("k8s_manifest_set")
    assert docs["EXAMPLES"] and docs["RETURN"]
    module = importlib.import_module(
        "ansible_collections.kserve_ansible.serving.plugins.modules.k8s_manifest_set"
    )
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

    own = set(module.argument_spec()) - set(AUTH_ARG_SPEC)
    assert set(docs["DOCUMENTATION"]["options"]) == own
    assert set(docs["DOCUMENTATION"]["options"]["sources"]["suboptions"]) == set(module.SOURCE_SPEC)
