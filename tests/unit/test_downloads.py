"""Release files downloaded from a URL: verified like mirror files, retried, and failures name the URL.

A real HTTP server on 127.0.0.1 (started here, in a thread) serves the files; nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading

import pytest
import yaml
from ansible_collections.kserve_ansible.serving.plugins.module_utils import downloads
from ansible_collections.kserve_ansible.serving.plugins.module_utils import manifests as m
from ansible_collections.kserve_ansible.serving.plugins.module_utils import releases as r

from devcluster.cluster import REPO_ROOT
from tests.helpers import run_playbook
from tests.upstream import UPSTREAM_DIR

needs_mirror = pytest.mark.skipif(not (UPSTREAM_DIR / "index.json").is_file(), reason="no upstream mirror")

MANIFEST = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n"


class Files(http.server.ThreadingHTTPServer):
    """Serves `files` ({path: bytes}); a path in `failures` answers 503 that many times first."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.failures: dict[str, int] = {}
        self.requests: list[str] = []

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        if self.server.failures.get(self.path, 0) > 0:
            self.server.failures[self.path] -= 1
            self.send_error(503, "try again")
        elif self.path in self.server.files:
            body = self.server.files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404, "no such file")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    files = Files()
    thread = threading.Thread(target=files.serve_forever, daemon=True)
    thread.start()
    yield files
    files.shutdown()
    files.server_close()
    thread.join()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/serving-core.yaml"


def fetch_now(url):
    """The modules' fetch, without the pauses between attempts."""
    return downloads.fetch(url, delay=0)


def url_source(url, data, **params):
    return m.ManifestSource.from_params({"url": url, "sha256": hashlib.sha256(data).hexdigest(), **params})


def test_a_download_that_matches_its_checksum_loads(server):
    server.files["/demo.yaml"] = MANIFEST
    objects = m.load_manifest_set([url_source(server.url("/demo.yaml"), MANIFEST)], [], fetch_now)
    assert [obj["metadata"]["name"] for obj in objects] == ["demo"]


def test_a_download_with_other_bytes_fails_naming_the_url_and_both_checksums(server):
    server.files["/demo.yaml"] = MANIFEST.replace(b"demo", b"evil")
    url = server.url("/demo.yaml")
    expected = hashlib.sha256(MANIFEST).hexdigest()
    actual = hashlib.sha256(server.files["/demo.yaml"]).hexdigest()
    with pytest.raises(m.ChecksumMismatch) as failure:
        m.load_manifest_set([url_source(url, MANIFEST)], [], fetch_now)
    assert str(failure.value).startswith(
        f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}."
    )


def test_a_server_that_fails_a_few_times_is_retried(server):
    server.files["/demo.yaml"] = MANIFEST
    server.failures["/demo.yaml"] = downloads.ATTEMPTS - 1
    assert fetch_now(server.url("/demo.yaml")) == MANIFEST
    assert server.requests == ["/demo.yaml"] * downloads.ATTEMPTS


def test_a_server_that_keeps_failing_fails_naming_the_url_and_its_last_answer(server):
    server.failures["/demo.yaml"] = downloads.ATTEMPTS
    url = server.url("/demo.yaml")
    with pytest.raises(downloads.DownloadError) as failure:
        fetch_now(url)
    assert str(failure.value) == (
        f"download of {url} failed (attempt {downloads.ATTEMPTS} of {downloads.ATTEMPTS}): HTTP 503 try again"
    )


def test_a_missing_file_is_not_retried(server):
    url = server.url("/nope.yaml")
    with pytest.raises(downloads.DownloadError) as failure:
        fetch_now(url)
    assert str(failure.value) == f"download of {url} failed (attempt 1 of 4): HTTP 404 no such file"
    assert server.requests == ["/nope.yaml"]


def test_an_unreachable_url_fails_naming_it():
    url = closed_port_url()
    with pytest.raises(downloads.DownloadError) as failure:
        fetch_now(url)
    message = str(failure.value)
    assert message.startswith(f"download of {url} failed (attempt 4 of 4): ")
    assert "refused" in message.lower()


class TestPins:
    """Which downloads have a pin, and what happens to a file without one."""

    @needs_mirror
    @pytest.mark.parametrize(
        ("component", "version", "file_name"),
        [
            ("knative-serving", "1.16.0", "serving-core.yaml"),
            ("net-istio", "1.16.0", "istio.yaml"),
            ("kserve", "0.14.1", "kserve-cluster-resources.yaml"),
        ],
    )
    def test_a_published_release_file_is_verified_when_downloaded(
        self, server, component, version, file_name
    ):
        """The catalog's pin of a byte-exact release asset verifies its download (served from the mirror)."""
        published = (UPSTREAM_DIR / component / version / file_name).read_bytes()
        found = r.release_file(component, version, file_name)
        assert found.url.startswith("https://github.com/")
        assert found.sha256 == hashlib.sha256(published).hexdigest()
        server.files[f"/{file_name}"] = published
        here = m.ManifestSource(url=server.url(f"/{file_name}"), sha256=found.sha256)
        assert m.load_manifest_set([here], [], fetch_now)
        server.files[f"/{file_name}"] = published + b"\n# one more line\n"
        with pytest.raises(m.ChecksumMismatch, match=f"expected sha256 {found.sha256}, got "):
            m.load_manifest_set([here], [], fetch_now)

    def test_a_reconstructed_file_has_no_download_pin_and_is_refused(self):
        with pytest.raises(r.ReleaseError) as failure:
            r.release_file("cert-manager", "1.16.2", "cert-manager.yaml")
        assert str(failure.value).startswith(
            "https://github.com/cert-manager/cert-manager/releases/download/v1.16.2/cert-manager.yaml: "
            "no sha256 of this published file is pinned"
        )
        assert '{"cert-manager": {"1.16.2": {"cert-manager.yaml": "<sha256>"}}}' in str(failure.value)
        assert "kserve_ansible_allow_unpinned: true" in str(failure.value)

    def test_its_mirror_copy_is_still_verified(self):
        mirrored = r.release_file("cert-manager", "1.16.2", "cert-manager.yaml", mirror_dir="/m")
        assert mirrored.sha256 == r.CATALOG["cert-manager"].releases["1.16.2"]["cert-manager.yaml"]

    def test_the_users_checksum_pins_its_download(self):
        extra = {"knative-serving": {"1.16.0": {"serving-default-domain.yaml": "ab" * 32}}}
        found = r.release_file("knative-serving", "1.16.0", "serving-default-domain.yaml", extra=extra)
        assert (found.url.endswith("/serving-default-domain.yaml"), found.sha256) == (True, "ab" * 32)

    def test_allowed_explicitly_it_is_downloaded_unverified(self):
        found = r.release_file("cert-manager", "1.16.2", "cert-manager.yaml", allow_unpinned=True)
        assert (found.url.endswith("/v1.16.2/cert-manager.yaml"), found.sha256) == (True, "")

    def test_a_url_source_without_a_checksum_is_refused_unless_allowed(self, server):
        server.files["/demo.yaml"] = MANIFEST
        url = server.url("/demo.yaml")
        with pytest.raises(
            m.ManifestError, match=rf"^{url}: a download needs its sha256 \(sources\[\]\.sha256\)"
        ):
            m.ManifestSource.from_params({"url": url})
        source = m.ManifestSource.from_params({"url": url}, allow_unpinned=True)
        assert m.load_manifest_set([source], [], fetch_now)


@pytest.mark.parametrize("allow", [False, True])
def test_the_role_setting_reaches_the_module(tmp_path, server, allow):
    """k8s_manifest_set, run by Ansible: an unpinned download fails before the cluster is contacted, unless
    kserve_ansible_allow_unpinned; a wrong checksum fails naming the URL (no cluster here at all)."""
    server.files["/demo.yaml"] = MANIFEST
    playbook = tmp_path / "apply.yml"
    task = {
        "kserve_ansible.serving.k8s_manifest_set": {
            "kubeconfig": str(tmp_path / "no-kubeconfig"),
            "sources": [
                {"url": server.url("/demo.yaml")},
                {"url": server.url("/demo.yaml"), "sha256": "0" * 64},
            ],
            "allow_unpinned": "{{ kserve_ansible_allow_unpinned }}",
        }
    }
    play = {"hosts": "localhost", "gather_facts": False, "roles": [], "tasks": [task]}
    playbook.write_text(yaml.safe_dump([play]))
    settings = json.dumps({"kserve_ansible_allow_unpinned": allow})
    result = run_playbook(str(playbook), "-e", settings)
    assert result.returncode != 0
    output = " ".join(result.stdout.split())
    if allow:
        assert f"checksum mismatch for {server.url('/demo.yaml')}: expected sha256 {'0' * 64}, got " in output
    else:
        assert f"{server.url('/demo.yaml')}: a download needs its sha256" in output
        assert server.requests == []


def release_reading_tasks():
    """(file, task name, module args) of every role or playbook task that reads release files."""
    modules = ("kserve_ansible.serving.k8s_manifest_set", "kserve_ansible.serving.kserve_upgrade_plan")
    found = []

    def walk(node, path):
        if isinstance(node, list):
            for item in node:
                walk(item, path)
        elif isinstance(node, dict):
            for module in modules:
                if isinstance(node.get(module), dict) and "mirror_dir" in node[module]:
                    found.append((path, node.get("name"), node[module]))
            for value in node.values():
                walk(value, path)

    for path in sorted([*REPO_ROOT.glob("roles/*/tasks/*.yml"), *REPO_ROOT.glob("playbooks/*.yml")]):
        walk(yaml.safe_load(path.read_text()), str(path.relative_to(REPO_ROOT)))
    return found


def test_every_task_that_reads_release_files_passes_the_shared_settings():
    tasks = release_reading_tasks()
    assert len(tasks) >= 8
    for path, name, args in tasks:
        assert args.get("allow_unpinned") == "{{ kserve_ansible_allow_unpinned }}", (path, name)
        assert args.get("image_overrides") == "{{ kserve_ansible_image_overrides }}", (path, name)
