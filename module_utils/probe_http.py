"""Sending an inference probe: where requests go, and N of them with bounded retries and concurrency.

KServe users without DNS reach a service through the ingress gateway with the service's host name in
the Host header (`curl -H "Host: NAME.NS.DOMAIN" http://INGRESS:PORT/...`); `resolve_target` builds
exactly that when an ingress host is given. Latency is that of the attempt that got the final answer
(kept-alive connections, one session per worker thread); retries while a model warms up are counted
separately, never hidden in the figures.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .probe import Outcome

try:
    import requests
except ImportError:  # reported by the module's dependency check
    requests = None

RETRY_STATUSES = (502, 503, 504)
MAX_RETRY_DELAY = 5.0


@dataclass
class Target:
    url: str
    headers: dict = field(default_factory=dict)
    verify: bool | str = True  # requests' `verify`: bool or CA bundle path

    @property
    def host_header(self) -> str | None:
        return self.headers.get("Host")


def resolve_target(
    base_url: str,
    path: str,
    ingress_host: str | None = None,
    ingress_port: int | None = None,
    ingress_scheme: str = "http",
    validate_certs: bool = True,
    ca_path: str | None = None,
    headers: dict | None = None,
    bearer_token: str | None = None,
) -> Target:
    """Where to send: the service URL itself, or the ingress with the service's host in `Host`."""
    base = urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    all_headers = {"Content-Type": "application/json"}
    if ingress_host:
        port = f":{ingress_port}" if ingress_port else ""
        url = f"{ingress_scheme}://{ingress_host}{port}{path}"
        all_headers["Host"] = base.netloc
    else:
        url = f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}{path}"
    if bearer_token:
        all_headers["Authorization"] = f"Bearer {bearer_token}"
    all_headers.update(headers or {})
    verify = (ca_path or True) if validate_certs else False
    return Target(url=url, headers=all_headers, verify=verify)


class Sender:
    """Sends the same JSON body `count` times over `concurrency` worker threads."""

    def __init__(self, target: Target, timeout: float, retries: int, retry_delay: float):
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._local = threading.local()
        self._sessions = []

    def send_all(self, body, count: int, concurrency: int) -> tuple[list[Outcome], float]:
        """All outcomes in request order, and the wall time in seconds."""
        start = time.perf_counter()
        try:
            if concurrency == 1:
                outcomes = [self.send(body) for _request in range(count)]
            else:
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    outcomes = list(pool.map(lambda _: self.send(body), range(count)))
        finally:
            for session in self._sessions:
                session.close()
        return outcomes, time.perf_counter() - start

    def send(self, body) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(body)
            outcome.attempts = attempt
            retryable = outcome.status is None or outcome.status in RETRY_STATUSES
            if not retryable or attempt > self.retries:
                return outcome
            time.sleep(min(MAX_RETRY_DELAY, self.retry_delay * 2 ** (attempt - 1)))

    def _attempt(self, body) -> Outcome:
        session = self._session()
        start = time.perf_counter()
        try:
            response = session.post(
                self.target.url,
                json=body,
                headers=self.target.headers,
                timeout=self.timeout,
                verify=self.target.verify,
            )
            content = response.content
        except requests.RequestException as exc:
            return Outcome(None, _ms(start), error=f"{type(exc).__name__}: {exc}")
        latency = _ms(start)
        try:
            parsed = response.json() if content else None
        except ValueError:
            parsed = content.decode("utf-8", errors="replace")
        return Outcome(response.status_code, latency, parsed)

    def _session(self):
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._sessions.append(self._local.session)
        return self._local.session


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
