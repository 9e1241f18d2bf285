"""Pinned downloads: fetch one URL to a file, check its sha256, write atomically, retry with backoff.

Nothing is left at the target unless it is the pinned file: the bytes go to a temporary file beside the
target, which is renamed into place only once its sha256 matched, and is removed in every other case
(one left by a killed process is removed by the next attempt, see garimpo.atomic).
Transient failures (timeouts, refused or reset connections, HTTP 408/425/429/5xx, a body cut short) are
retried with exponential backoff; a wrong checksum or a definitive HTTP error (404, 403, ...) is not.
Downloads are bounded: a size cap (``max_bytes``, config downloads.max_size_mb) and an optional pinned size
(downloads.files.NAME.size) stop the stream as soon as it is too long, whether or not the server announced
a length, and an overall deadline (``deadline_s``, downloads.deadline_s) covers every attempt and wait.
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
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from garimpo.atomic import atomic_path
from garimpo.errors import ChecksumError, DownloadError
from garimpo.imagery.redact import redact_url
from garimpo.imagery.stac import RetryPolicy

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
SCHEMES = ("https", "http", "file")
USER_AGENT = "garimpo-workflow/0.1 (pinned input download)"
CHUNK_BYTES = 1 << 20
MIB = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A download's name becomes a file name: the schema's propertyNames of downloads.files, checked again here.
FILE_NAME = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]*$")
FILE_NAME_RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit; no '/', '..' or spaces"


# The project's one retry policy (as for STAC searches), with a pinned download's patience.
DOWNLOAD_RETRY = RetryPolicy(attempts=5, base_delay=2.0, max_delay=60.0, timeout=120.0)


class _Retryable(Exception):
    """One attempt failed in a way that another attempt may not."""


class _PastDeadline(Exception):
    """The overall deadline passed during an attempt."""


@dataclass(frozen=True)
class _Bounds:
    """What one download may take: bytes (None: no cap), the pinned size, and the deadline on ``clock``."""

    max_bytes: int | None
    size: int | None
    deadline: float | None
    clock: Callable[[], float]

    def left_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()


def path_under(folder: str | os.PathLike, name: str, key: str = "downloads.files") -> Path:
    """``folder/name``, once sure that ``name`` is a plain file name, so the file stays in ``folder``.

    Raises DownloadError naming ``key`` (the config key the name comes from) for a name with a '/', a
    '..', a space or another character outside :data:`FILE_NAME_RULE` (e.g. '../../../escape.bin').
    """
    folder = Path(folder)
    dest = folder / str(name)
    inside = Path(os.path.normpath(dest)).parent == Path(os.path.normpath(folder))
    if not (FILE_NAME.match(str(name)) and inside):
        raise DownloadError(
            f"config {key}: {str(name)!r} cannot be the name of a download: it becomes the file name under "
            f"{folder}/ ({os.path.normpath(dest)}). Rename it in the config to a plain file name ({FILE_NAME_RULE}), "
            f"e.g. the last part of its URL, and point the keys that use it at {folder}/NEWNAME."
        )
    return dest


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


def _wrong_size(url: str, dest: Path, key: str, bounds: _Bounds, what: str) -> DownloadError:
    """The error for a download longer than the cap, or of another length than the pinned size; ``what``
    says what the server announced or sent."""
    if bounds.size is not None and (bounds.max_bytes is None or bounds.size <= bounds.max_bytes):
        return DownloadError(
            f"refused {redact_url(url)}: {what}, but {key}.size pins {bounds.size} bytes, so this is not the pinned "
            "file "
            f"(changed upstream, or a proxy or captive portal answered instead); nothing was written to {dest}. "
            f"Check the URL; if you have checked the new file and want it, update {key}.size and {key}.sha256."
        )
    # Called only past a cap or a pinned size: without a pinned size (or under it), the cap is set.
    assert bounds.max_bytes is not None
    return DownloadError(
        f"refused {redact_url(url)}: {what}, over the cap downloads.max_size_mb = {bounds.max_bytes / MIB:.4g} MiB; "
        "nothing "
        f"was written to {dest}. Check {key}.url; if the file really is that large, raise "
        "downloads.max_size_mb in the config (and make sure the disk has room)."
    )


def _fetch_once(
    url: str, fh, timeout_s: float, bounds: _Bounds | None = None, dest: Path = Path("."), key: str = "downloads.files"
) -> tuple[str, int]:
    """Stream ``url`` into the open binary file ``fh``; return (sha256 hex digest, bytes written).

    Raises DownloadError as soon as the announced length or the bytes received pass ``bounds`` (before
    writing those bytes), _PastDeadline once ``bounds.deadline`` has passed, _Retryable for a body cut short.
    """
    bounds = bounds or _Bounds(None, None, None, time.monotonic)
    cap = min((b for b in (bounds.max_bytes, bounds.size) if b is not None), default=None)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        announced = response.headers.get("Content-Length") if response.headers is not None else None
        length = int(announced) if announced is not None and announced.strip().isdigit() else None
        if length is not None and bounds.size is not None and length != bounds.size:
            raise _wrong_size(
                url, dest, key, _Bounds(None, bounds.size, None, bounds.clock), f"the server announces {length} bytes"
            )
        if length is not None and cap is not None and length > cap:
            raise _wrong_size(url, dest, key, bounds, f"the server announces {length} bytes")
        # read1 returns what has arrived (up to a chunk), so the deadline is checked between network reads.
        read = getattr(response, "read1", response.read)
        while chunk := read(CHUNK_BYTES):
            if cap is not None and size + len(chunk) > cap:
                raise _wrong_size(
                    url,
                    dest,
                    key,
                    bounds,
                    f"the server sent more than {cap} bytes"
                    + ("" if length is not None else " without announcing a length"),
                )
            fh.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            left = bounds.left_s()
            if left is not None and left <= 0:
                raise _PastDeadline(f"{size} bytes received in this attempt")
    if length is not None and length != size:
        raise _Retryable(f"connection closed after {size} of {announced} bytes")
    if bounds.size is not None and size != bounds.size:
        raise _Retryable(f"connection closed after {size} of the {bounds.size} bytes pinned by {key}.size")
    return digest.hexdigest(), size


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return f"{type(err).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def download(
    url: str,
    dest: str | Path,
    sha256: str,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    *,
    max_bytes: int | None = None,
    deadline_s: float | None = None,
    size: int | None = None,
    key: str = "downloads.files",
    clock: Callable[[], float] = time.monotonic,
) -> Path:
    """Download ``url`` to ``dest`` and make sure it is the file whose sha256 is ``sha256``.

    ``max_bytes``: refuse a file larger than this (announced or received), None for no cap;
    ``size``: the pinned length in bytes (None: not pinned), a different one is refused at once;
    ``deadline_s``: seconds for the whole download, every attempt and every wait between them included
    (None: no deadline; each network read also times out after ``retry.timeout``). ``key`` is the config
    key the pin comes from (downloads.files.NAME), named in errors; ``clock`` is for tests.
    Returns ``dest``. Raises :class:`ChecksumError` when the bytes are not the pinned ones and
    :class:`DownloadError` when no attempt succeeded, a bound was passed or a pin is malformed; in every
    case nothing is left at ``dest``. An existing ``dest`` with the right checksum is kept (no request made).
    """
    retry = retry or DOWNLOAD_RETRY
    dest = Path(dest)
    expected = str(sha256).strip().lower()
    if not _SHA256.match(expected):
        raise DownloadError(
            f"pinned sha256 for {redact_url(url)} is {sha256!r}, not 64 hexadecimal digits; fix {key}.sha256 in "
            "the config"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(
            f"cannot download {redact_url(url)!r}: URL scheme {scheme!r} is not one of {list(SCHEMES)}; fix "
            f"{key}.url in the config"
        )
    if size is not None and max_bytes is not None and size > max_bytes:
        raise DownloadError(
            f"not downloading {redact_url(url)}: {key}.size pins {size} bytes, more than downloads.max_size_mb = "
            f"{max_bytes / MIB:.4g} MiB. Raise downloads.max_size_mb in the config if the file really is that large."
        )
    if dest.is_file() and sha256_file(dest) == expected:
        log.info("%s already holds the pinned file (sha256 %s); not downloading", dest, expected)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = clock()
    bounds = _Bounds(max_bytes, size, None if deadline_s is None else start + deadline_s, clock)

    def past_deadline(attempt: int, why: str) -> DownloadError:
        return DownloadError(
            f"gave up downloading {redact_url(url)} after {clock() - start:.0f} s and {attempt} attempt(s): {why} the "
            f"deadline downloads.deadline_s = {deadline_s:g} s; nothing was written to {dest}. "
            f"On a slow connection raise downloads.deadline_s in the config and try again; or fetch the file "
            f"another way, check that its sha256 is {expected}, and put it at {dest}."
        )

    last = "no attempt made"
    for attempt in range(1, retry.attempts + 1):
        wait = retry.delay(attempt)
        left = bounds.left_s()
        if left is not None and left <= 0:
            raise past_deadline(attempt - 1, f"the last error was {last}, and time is past")
        try:
            with atomic_path(dest, suffix=".part") as tmp:  # removed unless complete and as pinned
                with open(tmp, "wb") as fh:
                    got, got_size = _fetch_once(
                        url, fh, retry.timeout if left is None else min(retry.timeout, left), bounds, dest, key
                    )
                    fh.flush()
                    os.fsync(fh.fileno())
                if got != expected:
                    raise ChecksumError(
                        f"checksum mismatch for {redact_url(url)}: expected sha256 {expected}, got {got} ({got_size} "
                        "bytes). "
                        f"Nothing was written to {dest}. The file at that URL is not the pinned one (changed "
                        "upstream, or a proxy or captive portal answered instead). Check the URL in a browser; if you "
                        f"have checked the new file and want it, update {key}.sha256 in the config, "
                        f"or put your own copy at {dest}, or point the config at a file of your own."
                    )
            log.info("downloaded %s -> %s (%d bytes, sha256 %s, attempt %d)", url, dest, got_size, got, attempt)
            return dest
        except urllib.error.HTTPError as err:
            err.close()
            if err.code not in RETRYABLE_STATUS:
                raise DownloadError(
                    f"could not download {redact_url(url)}: HTTP {err.code} {err.reason} (not retried). Check "
                    f"{key}.url "
                    f"in the config, or put the file (sha256 {expected}) at {dest} yourself."
                ) from err
            last = f"HTTP {err.code} {err.reason}"
            asked = _retry_after_s(err)
            if asked is not None:
                wait = min(retry.max_delay, asked)
        except _PastDeadline as err:
            raise past_deadline(attempt, f"the download was still running ({err}) at") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, _Retryable) as err:
            last = _describe(err)
        except DownloadError:  # a refused size or a wrong checksum: another attempt gets the same file
            raise
        except OSError as err:  # disk full, permissions: another attempt will not help
            raise DownloadError(
                f"could not write the download of {redact_url(url)} under {dest.parent}: {err}"
            ) from err
        if attempt < retry.attempts:
            left = bounds.left_s()
            if left is not None and wait >= left:
                raise past_deadline(
                    attempt,
                    f"the last error was {last}, and the {wait:.0f} s wait before the next attempt would end after",
                )
            log.warning(
                "attempt %d/%d to download %s failed (%s); retrying in %.1f s", attempt, retry.attempts, url, last, wait
            )
            sleep(wait)
    raise DownloadError(
        f"could not download {redact_url(url)} after {retry.attempts} attempts (last error: {last}); nothing was "
        "written to "
        f"{dest}. Check that this machine reaches the internet (download rules are localrules: they run where "
        f"snakemake is started, not on compute nodes) and try again later; or fetch the file another way, check "
        f"that its sha256 is {expected}, and put it at {dest}."
    )
