"""Downloads of release files: retried when the failure may pass, and a failure names the URL.

The modules (k8s_manifest_set, kserve_upgrade_plan) and the release_file lookup fetch with `fetch`; what they
fetch is verified against its pinned sha256 by `manifests.verify_checksum` afterwards.
"""

import http.client
import time
import urllib.error

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from .manifests import ManifestError

ATTEMPTS = 4
FIRST_DELAY = 2.0  # seconds before the second attempt, doubled before each next one (2 + 4 + 8)
TIMEOUT = 60  # seconds per attempt
# HTTP statuses worth another attempt: timeouts, rate limits and server-side failures; any other is final.
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DownloadError(ManifestError):
    """A URL could not be downloaded (the message names it, the attempts and the last failure)."""


def _failure(exc):
    """What went wrong, in a few words, and whether another attempt may succeed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}", exc.code in RETRIED_STATUSES
    if isinstance(exc, SSLValidationError):
        return f"TLS: {exc}", False
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason), True
    return str(exc) or type(exc).__name__, True


def fetch(url, attempts=ATTEMPTS, delay=FIRST_DELAY, timeout=TIMEOUT):
    """The bytes at `url`, with up to `attempts` tries; DownloadError naming the URL when they all fail."""
    for attempt in range(1, attempts + 1):
        try:
            return open_url(url, timeout=timeout, follow_redirects="all").read()
        except (OSError, http.client.HTTPException, UrlsConnectionError) as exc:
            reason, retry = _failure(exc)
        if not retry or attempt == attempts:
            tries = f" (attempt {attempt} of {attempts})" if attempts > 1 else ""
            raise DownloadError(f"download of {url} failed{tries}: {reason}")
        time.sleep(delay * 2 ** (attempt - 1))
    raise DownloadError(f"download of {url}: no attempt made (attempts={attempts})")
