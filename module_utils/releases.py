"""The release catalog: which upstream releases the roles support, where their files come from, their sha256.

Pure data and lookups, no I/O. The one place for these facts: modules (k8s_manifest_set), the filter, test
and lookup plugins (validation in playbooks/validate.yml and the roles, the monitoring role's dashboards)
and the tests all read it.

- A *component* is one upstream project's releases (``knative-serving``). Its files are published under
  ``release_url`` (``{ref}`` is the release's git ref, by default ``v<version>``-like as the project tags).
- A *mirror* (``kserve_ansible_mirror_dir``: offline installs) holds them as
  ``<mirror>/<component>/<version>/<file>`` (see ``mirror_path``), Helm charts as
  ``<mirror>/<component>/<version>/charts/<dir>``.
- The pinned sha256 of each file is the mirror's (some mirror files are reconstructed, not byte-identical
  to the published asset, see the mirror's README), so it is verified for every file read from a mirror.
  Downloads are verified only for components whose pins are the published bytes (``verify_downloads``).
- A version outside the catalog is refused with the list of supported ones, unless the user declares its
  files and checksums in ``extra`` (``kserve_ansible_extra_releases``: the same shape as a component's
  ``releases``), which is the documented way to run another release.
"""

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
    verify_downloads: bool = False


CATALOG = {
    "cert-manager": Component(
        release_url="https://github.com/cert-manager/cert-manager/releases/download/v{version}",
        releases={
            "1.16.2": {
                "cert-manager.yaml": "1d51cdecd442f1f5f89783e9e0169b95d372724da203cc75dd7a5c4e50a10ce6",
            },
        },
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
        },
        charts={
            "kserve-crd": ("charts/kserve-crd", "oci://ghcr.io/kserve/charts/kserve-crd"),
            "kserve": ("charts/kserve-resources", "oci://ghcr.io/kserve/charts/kserve"),
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
        verify_downloads=True,
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


def release_file(name, version, file_name, mirror_dir="", extra=None):
    """Where to read one file of a release, and its pinned sha256 (ReleaseError when the catalog lacks it)."""
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
    return ReleaseFile(
        name, version, file_name, url=url, sha256=pinned if component(name).verify_downloads else ""
    )


def chart_ref(name, chart, version, mirror_dir=""):
    """A Helm chart of a release: the mirror's chart directory, else its OCI reference."""
    charts = component(name).charts
    if chart not in charts:
        raise ReleaseError(f"{name} has no chart {chart!r} (charts: {', '.join(sorted(charts))})")
    directory, oci = charts[chart]
    return mirror_path(mirror_dir, name, version, directory) if mirror_dir else oci
