"""One run of a manifest set against one cluster: raw API calls, kind lookups, worker threads, warnings.

Built on kubernetes.core's API client (`get_api_client`: auth, discovery cache). The units that use it:
`k8s_apply.py` (phased server-side apply), `k8s_waits.py` (CRDs Established, Deployments rolled out,
objects gone) and `k8s_delete.py` (uninstall with the custom-resource guard).
"""

import contextlib
import json
import re
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from .k8s_kinds import Kinds

with contextlib.suppress(ImportError):  # a missing client library is reported by the module's checks
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError
    from urllib3.exceptions import HTTPError as ConnectionProblem

METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_ONLY_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
CRD_KIND = ("CustomResourceDefinition", "apiextensions.k8s.io/v1")

# The API server's answers when it is overloaded or its storage is slow: the call may or may not have been
# done, and doing it again is safe for every call we make but a create (a read, a server-side apply, a
# delete), so those are retried after these pauses (seconds), with a warning; a create is not.
BUSY_STATUS = (429, 503, 504)
BUSY_WORDS = (
    "Timeout: request did not complete within requested timeout",
    "the server was unable to return a response in the time allotted",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
)
BUSY_PAUSES = (1, 2, 4, 8)


def busy(exc):
    """True when an API error says the API server could not do the call in time (worth a retry)."""
    status = getattr(exc, "status", None)
    return status in BUSY_STATUS or (status == 500 and any(words in reason(exc) for words in BUSY_WORDS))


def reason(exc):
    """The API server's message for an error, not the client library's wrapper text."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (TypeError, ValueError):
            return str(body)
    return str(exc)


class Unreachable(Exception):
    """No usable cluster: the kubeconfig has no such context, or the API server does not answer. The message
    is one line, for the user: the context or the API server's address, and what failed."""


# kubernetes' words for a context the kubeconfig does not have (the file's path follows).
_MISSING_CONTEXT = re.compile(r"Expected object with name (\S*) in .*contexts list")
# The OS's words in a socket error: "[Errno 111] Connection refused", "ConnectionResetError(104, 'Connection
# reset by peer')", "[Errno -2] Name or service not known".
_OS_WORDS = re.compile(r"\[Errno -?\d+\] ([^)\"']+)|Error\(-?\d+, '([^']+)'\)")
# The TLS library's: "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)".
_TLS_WORDS = re.compile(r"\[SSL: \w+\] ([^(]+)")
# urllib3's wrapper text around them: "HTTPSConnection(host='10.0.0.1', port=6443): ", "(Caused by ...)".
_WRAPPER = re.compile(r"^.*?Connection(?:Pool)?\(host=[^)]*\): |\s*\(Caused by .*$")


def _what_failed(exc):
    """What went wrong on the way to the API server, in the OS's or the TLS library's words."""
    cause = getattr(exc, "reason", None) or exc  # urllib3's MaxRetryError holds the last attempt's error
    text = str(cause)
    tls = _TLS_WORDS.search(text)
    if tls:
        return f"TLS: {tls.group(1).strip()}"
    words = _OS_WORDS.search(text)
    if words:
        words = (words.group(1) or words.group(2)).strip()
    elif "timed out" in text:
        words = "timed out"
    else:
        words = _WRAPPER.sub("", text).strip(" .") or type(cause).__name__
    return words[0].lower() + words[1:]


def unreachable(exc):
    """An Unreachable for an error that says there is no usable cluster (a kubeconfig without the context,
    an API server that does not answer), else None."""
    if isinstance(exc, Unreachable):
        return exc
    missing = _MISSING_CONTEXT.search(str(exc))
    if missing:
        return Unreachable(
            f"the kubeconfig has no context {missing.group(1)!r} (see `kubectl config get-contexts`)"
        )
    if isinstance(exc, ConnectionProblem):
        pool = getattr(exc, "pool", None)
        where = f"{pool.scheme}://{pool.host}:{pool.port}" if pool is not None else "of the kubeconfig"
        return Unreachable(f"cannot reach the Kubernetes API server {where}: {_what_failed(exc)}")
    return None


def _server(module, options):
    """The API server's address the connection options name, read as kubernetes.core reads them ("" when
    that fails: the address only completes a message)."""
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s import client

    try:
        return client._create_configuration(client._create_auth_spec(module, **options)).host
    except Exception:
        return ""


def _refusal(exc, server):
    """Unreachable for an answer to the client's first requests (version, discovery) that is not a cluster's
    for these credentials: refused them, or not Kubernetes at all."""
    answer = f"{exc.status} {exc.reason}"
    if exc.status in (401, 403):
        return Unreachable(
            f"the Kubernetes API server {server} refused the kubeconfig's credentials ({answer})"
        )
    return Unreachable(f"the server {server} does not answer as a Kubernetes API server ({answer})")


def connect(module=None, **options):
    """kubernetes.core's client for the module's connection options (or `options`); it asks the API server
    for its version and API groups. Unreachable when there is no usable cluster."""
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

    try:
        return get_api_client(module=module, **options)
    except CoreException as exc:  # a kubeconfig problem: "Could not create API client: ..."
        raise unreachable(exc) or Unreachable(f"no usable cluster connection: {exc}") from None
    except DynamicApiError as exc:
        raise _refusal(exc, _server(module, options)) from None
    except Exception as exc:
        problem = unreachable(exc)
        if problem is None:
            raise
        raise problem from None


def fail(module, exc):
    """Fail `module` for an error its own handlers did not expect: one line when there is no usable cluster
    (also when the API server stops answering during the run), else the API server's or urllib's own words
    (the most useful message) with the traceback."""
    problem = unreachable(exc)
    if problem:
        module.fail_json(msg=str(problem))
    module.fail_json(msg=f"{type(exc).__name__}: {reason(exc)}", exception=traceback.format_exc())


class Api:
    """`client` is kubernetes.core's K8SClient. In `check_mode` every write is a server-side dry run;
    `want_diff` reads whole objects where metadata would do, for the diff. `kinds` maps the objects'
    kinds to their API resources (see k8s_kinds.py). `webhook_timeout` bounds the retries of a write an
    admission webhook cannot take yet (default `timeout`; 0: no retry)."""

    def __init__(
        self,
        client,
        check_mode=False,
        want_diff=False,
        workers=8,
        timeout=300,
        warn=None,
        webhook_timeout=None,
    ):
        self.client = client
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.workers = workers
        self.timeout = timeout
        self.webhook_timeout = timeout if webhook_timeout is None else webhook_timeout
        self.kinds = Kinds(client)
        self.warnings = []
        self._warn = warn

    def warn(self, message):
        self.warnings.append(message)
        if self._warn:
            self._warn(message)

    def parallel(self, function, items):
        """function(item) for each item, on up to `workers` threads; the answers in the items' order."""
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(function, items))

    def request(self, method, path, body=None, metadata_only=False, **params):
        """One API call; `metadata_only` asks for metadata alone ("list" for a collection)."""
        if metadata_only:
            params["header_params"] = {
                "Accept": METADATA_ONLY_LIST if metadata_only == "list" else METADATA_ONLY
            }
        if self.check_mode and method != "get":
            params["dry_run"] = "All"
        pauses = () if method == "post" else BUSY_PAUSES
        for attempt in range(len(pauses) + 1):
            try:
                response = self.client.client.request(method, path, body=body, serialize=False, **params)
                break
            except DynamicApiError as exc:
                if attempt == len(pauses) or not busy(exc):
                    raise
                self.warn(
                    f"{method.upper()} {path}: the API server is busy ({exc.status}: {reason(exc)}); "
                    f"retry {attempt + 1} of {len(pauses)} in {pauses[attempt]} s"
                )
                time.sleep(pauses[attempt])
        data = response.data
        return json.loads(data) if data else None

    def builtin(self, kind, api_version):
        """The API resource of a built-in kind (CustomResourceDefinition, Pod)."""
        return self.client.resource(kind, api_version)

    @staticmethod
    def namespace(resource, obj):
        return (obj["metadata"].get("namespace") or "default") if resource.namespaced else None

    def path(self, resource, obj, name=None):
        name = name if name is not None else obj["metadata"].get("name")
        return resource.path(name=name, namespace=self.namespace(resource, obj))

    def get(self, resource, obj, metadata_only=True):
        """The live object (by default its metadata only), or None."""
        try:
            return self.request("get", self.path(resource, obj), metadata_only=metadata_only)
        except NotFoundError:
            return None

    def get_crd(self, name):
        """The live CustomResourceDefinition `name`, or None."""
        return self.get(self.builtin(*CRD_KIND), {"metadata": {"name": name}}, metadata_only=False)

    def generated_siblings(self, resource, obj):
        """Objects created earlier from obj's generateName template (same prefix and labels)."""
        metadata = obj["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in sorted((metadata.get("labels") or {}).items()))
        listing = self.request(
            "get",
            resource.path(namespace=self.namespace(resource, obj)),
            label_selector=selector or None,
            metadata_only="list",
        )
        prefix = metadata["generateName"]
        return [item for item in listing.get("items") or [] if item["metadata"]["name"].startswith(prefix)]
