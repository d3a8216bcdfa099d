"""The release catalog: which upstream releases the roles support, where their files come from, their sha256.

Pure data and lookups, no I/O. The one place for these facts: modules (k8s_manifest_set), the filter, test
and lookup plugins (validation in playbooks/validate.yml and the roles, the monitoring role's dashboards)
and the tests all read it.

- A *component* is one upstream project's releases (``knative-serving``). Its files are published under
  ``release_url`` (``{ref}`` is the release's git ref, by default ``v<version>``-like as the project tags).
- A *mirror* (``kserve_ansible_mirror_dir``: offline installs) holds them as
  ``<mirror>/<component>/<version>/<file>`` (see ``mirror_path``), Helm charts as
  ``<mirror>/<component>/<version>/charts/<dir>``.
- The pinned sha256 of each file is the mirror's, verified for every file read from a mirror. Most mirror
  files are the published release assets byte for byte, so their pins verify downloads too. A few are
  reconstructed (see the mirror's README): a component's ``unpublished_pins`` lists them, and a download of
  one has no pin. A download with no pin is refused unless the user gives the file's sha256 in ``extra``
  (which then verifies the download and a mirror copy alike) or explicitly allows unpinned downloads.
- What the roles do differently from one release of a component on is data too: its ``features`` (feature ->
  the first release that has it), asked with ``has_feature`` (the models role's hf:// workaround for KServe
  below 0.15.0). Everything else that differs between releases (KServe 0.16.0's extra CRDs, Certificate,
  webhooks and controller) is read from the release's own manifests, not listed here.
- A version outside the catalog is refused with the list of supported ones, unless the user declares its
  files and checksums in ``extra`` (``kserve_ansible_extra_releases``: the same shape as a component's
  ``releases``), which is the documented way to run another release.
"""

import json
import posixpath
import re
from dataclasses import dataclass, field

# A version pin as the roles take it: X.Y.Z (knative-monitoring, pinned by commit, is not a role pin).
VERSION_PATTERN = r"^\d+\.\d+\.\d+$"


class ReleaseError(Exception):
    """A release or file the catalog does not know (the message says what is supported)."""


@dataclass(frozen=True)
class Component:
    release_url: str  # format string: {version}, {ref}
    releases: dict  # version -> {file name: sha256}
    refs: dict = field(default_factory=dict)  # version -> git ref in release_url, when not the version
    charts: dict = field(default_factory=dict)  # chart name -> (mirror directory, OCI reference)
    # Files whose pin is the mirror's reconstruction, not the published bytes: not verifiable when downloaded.
    unpublished_pins: frozenset = frozenset()
    features: dict = field(default_factory=dict)  # feature -> the first release that has it


CATALOG = {
    "cert-manager": Component(
        release_url="https://github.com/cert-manager/cert-manager/releases/download/v{version}",
        releases={
            "1.16.2": {
                "cert-manager.yaml": "1d51cdecd442f1f5f89783e9e0169b95d372724da203cc75dd7a5c4e50a10ce6",
            },
        },
        # The mirror's cert-manager.yaml is v1.16.1's published file re-versioned, not v1.16.2's bytes.
        unpublished_pins=frozenset({"cert-manager.yaml"}),
    ),
    # net-istio ships the Istio it was tested with (1.22.2 for 1.16) as istio.yaml.
    "net-istio": Component(
        release_url="https://github.com/knative/net-istio/releases/download/knative-v{version}",
        releases={
            "1.16.0": {
                "istio.yaml": "50f3203d7fe1c4e54c3c96c040b676e7379209e9c7ad64ab60ebdd73d2449d03",
                "net-istio.yaml": "f9bada57c125f0afeb943067e8ef8105d572040573bd58cb75b19f040f58a6d8",
            },
        },
    ),
    "knative-serving": Component(
        release_url="https://github.com/knative/serving/releases/download/knative-v{version}",
        releases={
            "1.16.0": {
                "serving-crds.yaml": "33cc24f96321cd19deea6b85397e53b24e1a7ae61aebc4a92c2bd867e93611ec",
                "serving-core.yaml": "1f55c6b02bbea20ffe7c203811ae8dfd238ead7caca1f2e76275b239dfd06206",
                "serving-default-domain.yaml": (
                    "eee4b5ddbc6b9ff0c2ec53a0f97818fb93deff3487cf62e3ccfd4b74d78fa44f"
                ),
                "serving-post-install-jobs.yaml": (
                    "c30d84ef82aa784ab9f18ef31c73ecedea382d006b72c62fc9ec1113c0601d34"
                ),
            },
        },
        # Assembled from source: its Job image is ko://..., where the published file has a gcr.io digest.
        unpublished_pins=frozenset({"serving-default-domain.yaml"}),
    ),
    "kserve": Component(
        release_url="https://github.com/kserve/kserve/releases/download/v{version}",
        releases={
            "0.14.1": {
                "kserve.yaml": "9b406ac59cc703ef739347d052d0aa9d92d80bc115fb453e4d70d185abace64b",
                "kserve-cluster-resources.yaml": (
                    "d313340c111032edc05f67575f55ea4ee01a07dda8b0bffe97f00a447f41dfc9"
                ),
            },
            "0.15.2": {
                "kserve.yaml": "e9b50af37a8704b57ab0272cf69d1ee05c33f6002cfd91a8d459877042be36b6",
                "kserve-cluster-resources.yaml": (
                    "0a1f5987fff67a98dac74079bdd423481775319e355388f59545a7873a2615fa"
                ),
            },
            # Adds LLMInferenceService: 4 more CRDs, the llmisvc controller with its own Certificate and
            # webhooks, and LLMInferenceServiceConfig objects (validated by that controller's webhook).
            "0.16.0": {
                "kserve.yaml": "1cedecd9022a6793a394f3c8b8cdb8dab6d8b8b0cd33b2046a22f4f7356e6eb3",
                "kserve-cluster-resources.yaml": (
                    "67bcdfe0bce80e813cb4b35fadba54dc8f26172651ee263318c93930fdf1934d"
                ),
            },
        },
        charts={
            "kserve-crd": ("charts/kserve-crd", "oci://ghcr.io/kserve/charts/kserve-crd"),
            "kserve": ("charts/kserve-resources", "oci://ghcr.io/kserve/charts/kserve"),
        },
        # What the roles do differently from a release on: see `has_feature`.
        features={
            # hf:// storageUris are accepted (kserve#3916); below, the models role serves such a model with
            # --model_id instead (the guide's workaround).
            "hf_storage_uri": "0.15.0",
        },
    ),
    # Knative Serving's Grafana dashboards (knative-extensions/monitoring, untagged: pinned by commit, the
    # last one before the OpenTelemetry dashboards of Knative >= 1.18). Raw files: the pins are the published
    # bytes.
    "knative-monitoring": Component(
        release_url="https://raw.githubusercontent.com/knative-extensions/monitoring/{ref}",
        releases={
            "36a2099": {
                "grafana/knative-serving-http-requests.json": (
                    "6355182fefd4a2c6a4577f7e5494a47879ccda0f48dd74ff3b8fc8ad594721e3"
                ),
                "grafana/knative-scaling.json": (
                    "8bd8b3babc7443f5824b69978f8e9ccadc9a52873e98822d6b171e494d9ece6b"
                ),
                "grafana/knative-revision-cpu-memory-metrics.json": (
                    "f977c8a466c34b2ef9eb0e2ee4d5a383f961a3b5f8e6709c0b79e695c881b99d"
                ),
                "grafana/knative-control-plane-efficiency.json": (
                    "8d69231851e2d4d44efeab8fe365fd9690a65cc74e92487c2d0857afbf948308"
                ),
                "grafana/knative-reconciler.json": (
                    "1bccec1b23e24b8dc910dc5ec935c6456a0bef3edaf8ead698176800e7397836"
                ),
            },
        },
        refs={"36a2099": "36a2099d02e728f6255f8ef4ab7856be76f8207a"},
    ),
}

# The role variables that pin releases, and the components each one pins (knative_version pins Knative Serving
# and its net-istio layer, installed at the same release).
VERSION_PINS = {
    "cert_manager_version": ("cert-manager",),
    "istio_version": ("net-istio",),
    "knative_version": ("knative-serving", "net-istio"),
    "kserve_version": ("kserve",),
}


@dataclass(frozen=True)
class ReleaseFile:
    """Where one release file is read from (one of `url` and `path`) and the sha256 to check, if any."""

    component: str
    version: str
    name: str
    url: str = ""
    path: str = ""
    sha256: str = ""


def component(name):
    if name not in CATALOG:
        raise ReleaseError(f"unknown component {name!r}; the catalog has: {', '.join(sorted(CATALOG))}")
    return CATALOG[name]


def releases(name, extra=None):
    """{version: {file: sha256}} of a component: the catalog's, plus the user's `extra` releases of it."""
    known = dict(component(name).releases)
    for version, files in ((extra or {}).get(name) or {}).items():
        known[str(version)] = {**known.get(str(version), {}), **(files or {})}
    return known


def supported_versions(name, extra=None):
    return sorted(releases(name, extra), key=_version_key)


def _version_key(version):
    return [int(part) if part.isdigit() else part for part in re.split(r"[.]", version)]


def version_key(version):
    """A version's sort key: "0.15.2" and "v0.15.2" -> (0, 15, 2) (ReleaseError when it is not X.Y.Z)."""
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)$", str(version))
    if not match:
        raise ReleaseError(f"not a version: {version!r} (expected X.Y.Z, e.g. 0.15.2)")
    return tuple(int(part) for part in match.groups())


def has_feature(name, version, feature):
    """Whether release `version` of component `name` has `feature` (a key of its `features`: the first release
    with it), for any X.Y.Z, also one declared in kserve_ansible_extra_releases."""
    features = component(name).features
    if feature not in features:
        raise ReleaseError(
            f"{name} has no feature {feature!r} in the catalog (features: {', '.join(sorted(features))})"
        )
    return version_key(version) >= version_key(features[feature])


def version_problem(variable, value, extra=None):
    """Why `value` cannot be the pin `variable` (a key of VERSION_PINS) or '' when it can.

    A pin must be a string X.Y.Z (argument specs' `type: str` silently turns a list or a number into a string)
    and a release of every component it pins.
    """
    if variable not in VERSION_PINS:
        raise ReleaseError(f"{variable} is not a version pin ({', '.join(VERSION_PINS)})")
    example = supported_versions(VERSION_PINS[variable][0])[-1]
    if not isinstance(value, str) or not re.match(VERSION_PATTERN, value):
        shown = repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"
        return f'{variable} must be a version string like "{example}", got {shown}'
    for name in VERSION_PINS[variable]:
        known = supported_versions(name, extra)
        if value not in known:
            return (
                f"{variable}={value}: {name} {value} is not a supported release "
                f"(supported: {', '.join(known)}). To run another release, declare its files and their "
                "sha256 in kserve_ansible_extra_releases."
            )
    return ""


def _ref(name, version):
    return component(name).refs.get(version, version)


def release_url(name, version):
    """The base URL of a component's release files."""
    return component(name).release_url.format(version=version, ref=_ref(name, version))


def mirror_path(mirror_dir, name, version, *parts):
    """The mirror's layout: <mirror>/<component>/<version>/<parts...>."""
    return posixpath.join(mirror_dir, name, version, *parts)


def release_file(name, version, file_name, mirror_dir="", extra=None, allow_unpinned=False):
    """Where to read one file of a release, and the sha256 to verify it against.

    ReleaseError when the release or the file is not in the catalog or `extra`, and when a download would
    have no pin (see the module docstring) unless `allow_unpinned`.
    """
    known = releases(name, extra)
    if version not in known:
        raise ReleaseError(
            f"{name} {version} is not a supported release "
            f"(supported: {', '.join(supported_versions(name, extra))}); "
            "declare another release's files and sha256 in kserve_ansible_extra_releases"
        )
    pinned = known[version].get(file_name)
    if not pinned:
        raise ReleaseError(
            f"{name} {version} has no pinned file {file_name!r} (pinned: {', '.join(sorted(known[version]))})"
        )
    if mirror_dir:
        return ReleaseFile(
            name, version, file_name, path=mirror_path(mirror_dir, name, version, file_name), sha256=pinned
        )
    url = f"{release_url(name, version)}/{file_name}"
    given = file_name in (((extra or {}).get(name) or {}).get(version) or {})
    if file_name in component(name).unpublished_pins and not given:
        if not allow_unpinned:
            example = json.dumps({name: {version: {file_name: "<sha256>"}}})
            raise ReleaseError(
                f"{url}: no sha256 of this published file is pinned (the catalog pins the mirror's "
                f"reconstructed copy), so a download cannot be verified. Give its sha256 in "
                f"kserve_ansible_extra_releases ({example}), "
                "read it from a mirror (kserve_ansible_mirror_dir), or allow unverified downloads "
                "(kserve_ansible_allow_unpinned: true)"
            )
        pinned = ""
    return ReleaseFile(name, version, file_name, url=url, sha256=pinned)


def chart_ref(name, chart, version, mirror_dir=""):
    """A Helm chart of a release: the mirror's chart directory, else its OCI reference."""
    charts = component(name).charts
    if chart not in charts:
        raise ReleaseError(f"{name} has no chart {chart!r} (charts: {', '.join(sorted(charts))})")
    directory, oci = charts[chart]
    return mirror_path(mirror_dir, name, version, directory) if mirror_dir else oci
