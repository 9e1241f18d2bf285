"""Pinned downloads: fetch one URL to a file, check its sha256, write atomically, retry with backoff.

Nothing is left at the target unless it is the pinned file: the bytes go to a temporary file beside the
target, which is renamed into place only once its sha256 matched, and is removed in every other case.
Transient failures (timeouts, refused or reset connections, HTTP 408/425/429/5xx, a body cut short) are
retried with exponential backoff; a wrong checksum or a definitive HTTP error (404, 403, ...) is not.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from .atomic import atomic_path
from .errors import ChecksumError, DownloadError
from .stac import RetryPolicy

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
SCHEMES = ("https", "http", "file")
USER_AGENT = "garimpo-workflow/0.1 (pinned input download)"
CHUNK_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# The project's one retry policy (as for STAC searches), with a pinned download's patience.
DOWNLOAD_RETRY = RetryPolicy(attempts=5, base_delay=2.0, max_delay=60.0, timeout=120.0)


class _Retryable(Exception):
    """One attempt failed in a way that another attempt may not."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _retry_after_s(err: urllib.error.HTTPError) -> float | None:
    """Seconds asked for by a Retry-After header (delta seconds or an HTTP date), if any."""
    value = err.headers.get("Retry-After") if err.headers is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _fetch_once(url: str, fh, timeout_s: float) -> tuple[str, int]:
    """Stream ``url`` into the open binary file ``fh``; return (sha256 hex digest, bytes written)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        announced = response.headers.get("Content-Length") if response.headers is not None else None
        while chunk := response.read(CHUNK_BYTES):
            fh.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if announced is not None and announced.strip().isdigit() and int(announced) != size:
        raise _Retryable(f"connection closed after {size} of {announced} bytes")
    return digest.hexdigest(), size


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return f"{type(err).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def download(url: str, dest: str | Path, sha256: str, retry: RetryPolicy | None = None,
             sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download ``url`` to ``dest`` and make sure it is the file whose sha256 is ``sha256``.

    Returns ``dest``. Raises :class:`ChecksumError` when the bytes are not the pinned ones and
    :class:`DownloadError` when no attempt succeeded; in both cases nothing is left at ``dest``.
    An existing ``dest`` with the right checksum is kept as it is (no request made).
    """
    retry = retry or DOWNLOAD_RETRY
    dest = Path(dest)
    expected = str(sha256).strip().lower()
    if not _SHA256.match(expected):
        raise DownloadError(f"pinned sha256 for {url} is {sha256!r}, not 64 hexadecimal digits; fix it in the config")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(f"cannot download {url!r}: URL scheme {scheme!r} is not one of {list(SCHEMES)}")
    if dest.is_file() and sha256_file(dest) == expected:
        log.info("%s already holds the pinned file (sha256 %s); not downloading", dest, expected)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)

    last = "no attempt made"
    for attempt in range(1, retry.attempts + 1):
        wait = retry.delay(attempt)
        try:
            with atomic_path(dest, suffix=".part") as tmp:  # removed unless complete and as pinned
                with open(tmp, "wb") as fh:
                    got, size = _fetch_once(url, fh, retry.timeout)
                    fh.flush()
                    os.fsync(fh.fileno())
                if got != expected:
                    raise ChecksumError(
                        f"checksum mismatch for {url}: expected sha256 {expected}, got {got} ({size} bytes). "
                        f"Nothing was written to {dest}. The file at that URL is not the pinned one (changed "
                        "upstream, or a proxy or captive portal answered instead). Check the URL in a browser; if you "
                        "have checked the new file and want it, update its sha256 under downloads.files in the config, "
                        f"or put your own copy at {dest}, or point the config at a file of your own."
                    )
            log.info("downloaded %s -> %s (%d bytes, sha256 %s, attempt %d)", url, dest, size, got, attempt)
            return dest
        except urllib.error.HTTPError as err:
            err.close()
            if err.code not in RETRYABLE_STATUS:
                raise DownloadError(
                    f"could not download {url}: HTTP {err.code} {err.reason} (not retried). Check the URL and the "
                    f"pin under downloads.files in the config, or put the file (sha256 {expected}) at {dest} yourself."
                ) from err
            last = f"HTTP {err.code} {err.reason}"
            asked = _retry_after_s(err)
            if asked is not None:
                wait = min(retry.max_delay, asked)
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, _Retryable) as err:
            last = _describe(err)
        except ChecksumError:
            raise
        except OSError as err:  # disk full, permissions: another attempt will not help
            raise DownloadError(f"could not write the download of {url} under {dest.parent}: {err}") from err
        if attempt < retry.attempts:
            log.warning("attempt %d/%d to download %s failed (%s); retrying in %.1f s", attempt, retry.attempts,
                        url, last, wait)
            sleep(wait)
    raise DownloadError(
        f"could not download {url} after {retry.attempts} attempts (last error: {last}); nothing was written to "
        f"{dest}. Check that this machine reaches the internet (download rules are localrules: they run where "
        f"snakemake is started, not on compute nodes) and try again later; or fetch the file another way, check "
        f"that its sha256 is {expected}, and put it at {dest}."
    )
