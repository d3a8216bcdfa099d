"""The check every run makes first (the kserve_ansible role: cluster_preflight with connection_only), against
an API server that answers: it passes once, and the plays after the first one skip it. The API server is a
local stand-in that answers only what the check asks (the version, and the API groups the client's discovery
reads), no cluster needed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import run_playbook, write_kubeconfig
from tests.integration.module_runner import run_module

VERSION = "v1.34.4"
CHECK = "TASK [kserve_ansible : Check that the cluster's API server answers]"

pytestmark = pytest.mark.slow


ANSWERS = {
    "/version": {"gitVersion": VERSION},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
}


class TheCheckOnly(BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path in ANSWERS
        body = json.dumps(ANSWERS.get(self.path, {"kind": "Status", "code": 404})).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def answering_kubeconfig(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), TheCheckOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    yield write_kubeconfig(tmp_path_factory.mktemp("answering") / "kubeconfig", address)
    server.shutdown()
    thread.join(timeout=10)


def test_the_check_reads_only_the_version(answering_kubeconfig):
    result = run_module("cluster_preflight", {"kubeconfig": answering_kubeconfig, "connection_only": True})
    assert not result.get("failed"), result
    assert (result["server_version"], result["problems"]) == (VERSION, [])
    assert "nodes" not in result


def outcomes(output: str, task: str) -> list[str]:
    """What each run of `task` gave ("ok", "skipping", ...), in order (default callback)."""
    lines = output.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith(task)]
    status = ("ok:", "skipping:", "changed:", "fatal:")
    return [next(line for line in lines[index:] if line.startswith(status)).split(":")[0] for index in starts]


def test_a_run_checks_once(answering_kubeconfig):
    # site.yml: every component's play lists kserve_ansible first; --tags knative runs the check in each of
    # them (it is tagged `always`), then the knative role fails on the stand-in (it serves no API).
    result = run_playbook(
        "site.yml", "--tags", "knative", "-e", f"kserve_ansible_kubeconfig={answering_kubeconfig}"
    )
    checks = outcomes(result.stdout, CHECK)
    assert checks[0] == "ok" and len(checks) > 1 and set(checks[1:]) == {"skipping"}, result.stdout[-3000:]
