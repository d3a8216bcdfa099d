"""What a module says when there is no usable cluster (k8s_api.connect / k8s_api.unreachable): one line, the
API server's address or the missing context, and what failed in the OS's or the TLS library's words.

Real connections to local ports (nothing listening; a plain TCP server that speaks no TLS); the failures a
local machine cannot produce on demand (a timeout, a reset) are urllib3's own exceptions as it raises them.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.kserve_ansible.serving.plugins.module_utils import k8s_api
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProtocolError

from tests.helpers import write_kubeconfig


def kubeconfig(tmp_path, server: str, verify: bool = False) -> str:
    return write_kubeconfig(tmp_path / "kubeconfig", server, verify=verify)


def problem(**options) -> str:
    with pytest.raises(k8s_api.Unreachable) as raised:
        k8s_api.connect(**options)
    return str(raised.value)


@pytest.fixture
def not_tls():
    """A local port whose server answers every TLS handshake with plain HTTP (the client retries)."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    with server:
        yield server.getsockname()[1]
        server.shutdown(socket.SHUT_RDWR)
    thread.join(timeout=10)


def test_a_closed_port(tmp_path):
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    assert (
        problem(kubeconfig=config)
        == "cannot reach the Kubernetes API server https://127.0.0.1:1: connection refused"
    )


def test_a_context_the_kubeconfig_does_not_have(tmp_path):
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    assert problem(kubeconfig=config, context="nope").startswith("the kubeconfig has no context 'nope' ")


def test_a_server_that_speaks_no_tls(tmp_path, not_tls):
    config = kubeconfig(tmp_path, f"https://127.0.0.1:{not_tls}", verify=True)
    message = problem(kubeconfig=config)
    assert message.startswith(f"cannot reach the Kubernetes API server https://127.0.0.1:{not_tls}: TLS: ")
    assert "_ssl.c" not in message and "Caused by" not in message


POOL = HTTPSConnectionPool("10.1.2.3", 6443)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            ConnectTimeoutError(HTTPSConnection("10.1.2.3", 6443), "Connection to 10.1.2.3 timed out."),
            "timed out",
        ),
        (
            ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
            "connection reset by peer",
        ),
    ],
)
def test_what_a_remote_api_server_can_do(error, words):
    found = k8s_api.unreachable(MaxRetryError(POOL, "/version", error))
    assert str(found) == f"cannot reach the Kubernetes API server https://10.1.2.3:6443: {words}"


def answering(status: int):
    """A local HTTP server answering the version, then `status` to the client's discovery (/apis)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path == "/version" else status
            body = json.dumps({"gitVersion": "v1.34.4"} if code == 200 else {"kind": "Status", "code": code})
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "the Kubernetes API server {} refused the kubeconfig's credentials (401 Unauthorized)"),
        (403, "the Kubernetes API server {} refused the kubeconfig's credentials (403 Forbidden)"),
        (404, "the server {} does not answer as a Kubernetes API server (404 Not Found)"),
    ],
)
def test_a_server_that_answers_but_not_to_us(tmp_path, status, message):
    server = answering(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        assert problem(kubeconfig=kubeconfig(tmp_path, address)) == message.format(address)
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_other_errors_are_not_about_reaching_the_cluster():
    assert k8s_api.unreachable(ValueError("no")) is None
