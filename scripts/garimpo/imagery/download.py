"""Pinned downloads: fetch one URL to a file, check its sha256, write atomically, retry with backoff.

Nothing is left at the target unless it is the pinned file: the bytes go to a temporary file beside the
target, which is renamed into place only once its sha256 matched, and is removed in every other case
(one left by a killed process is removed by the next attempt, see garimpo.atomic).
Transient failures (timeouts, refused or reset connections, HTTP 408/425/429/5xx, a body cut short) are
retried with exponential backoff; a wrong checksum or a definitive HTTP error (404, 403, ...) is not.
Downloads are bounded: a size cap (``max_bytes``, config downloads.max_size_mb) and an optional pinned size
(downloads.files.NAME.size) stop the stream as soon as it is too long, whether or not the server announced
a length, and an overall deadline (``deadline_s``, downloads.deadline_s) covers every attempt and wait,
and within an attempt every phase: name lookup and connect, status line and headers, body. urllib's own
timeout bounds each socket read, not a phase (a server may send one header byte a second for hours), so
the request is opened in a worker thread waited on until the deadline, and a watchdog shuts down the
attempt's sockets at the deadline, which ends any read still blocked on them (see :class:`_Watchdog`).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from garimpo.atomic import atomic_path
from garimpo.errors import ChecksumError, DownloadError
from garimpo.imagery.redact import redact_url
from garimpo.imagery.retry import RetryPolicy

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


class _Watchdog:
    """Holds one attempt to the deadline, ``left_s`` seconds from now (None: no deadline, nothing done).

    Every socket the attempt opens passes through :meth:`watch` (see :meth:`opener`); at the deadline
    they are all shut down, so a read blocked on one of them (through a proxy tunnel, TLS, trickling
    headers or a stalled body) returns at once, and :attr:`expired` tells the reader why. A duplicate
    of each socket is kept for that (shutting down a duplicate ends the connection for every holder),
    so a socket later wrapped by TLS, or closed by urllib once the headers are in, is reached as well.
    :meth:`close` stops the watch and closes the duplicates.
    """

    def __init__(self, left_s: float | None) -> None:
        self.left_s = left_s
        self.expired = threading.Event()
        self._lock = threading.Lock()
        self._dups: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        if left_s is not None:
            self._timer = threading.Timer(max(0.0, left_s), self.expire)
            self._timer.daemon = True
            self._timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if not self.expired.is_set():
                self._dups.append(sock.dup())
                return sock
        _shut_down(sock)  # opened by a thread abandoned at the deadline: ended at once
        return sock

    def expire(self) -> None:
        with self._lock:
            self.expired.set()
            dups = list(self._dups)
        for dup in dups:
            _shut_down(dup)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            dups, self._dups = self._dups, []
        for dup in dups:
            dup.close()

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's usual opener (proxies, redirects, file: URLs), its HTTP(S) sockets watched."""
        if self.left_s is None:
            return urllib.request.build_opener()
        watchdog = self

        def watched(http_class):
            def connection(host, **kwargs):
                conn = http_class(host, **kwargs)
                create = conn._create_connection  # socket.create_connection: every socket it opens
                conn._create_connection = lambda *args, **kw: watchdog.watch(create(*args, **kw))
                return conn

            return connection

        class HTTPHandler(urllib.request.HTTPHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(watched(http_class), req, **kwargs)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(watched(http_class), req, **kwargs)

        return urllib.request.build_opener(HTTPHandler, HTTPSHandler)

    def open(self, request: urllib.request.Request, timeout_s: float):
        """The response to ``request`` (status line and headers read), or _PastDeadline at the deadline.

        Opening runs in a daemon thread, waited on until the deadline: name lookup, connect and the headers
        are bounded as a whole. A thread left behind ends once its sockets are shut down (or, in a name
        lookup, when that gives up); a response it gets afterwards is closed unread.
        """
        opener = self.opener()
        if self.left_s is None:
            return opener.open(request, timeout=timeout_s)
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(opener.open(request, timeout=timeout_s))
            except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(err)

        threading.Thread(target=run, name="garimpo-download-open", daemon=True).start()
        done, _ = wait([future], timeout=max(0.0, self.left_s))
        # Not done by the deadline, or done once the watchdog shut the socket (the headers cut short: a
        # failure, or a response whose headers end there); an HTTP error status is an answer.
        if not done or (self.expired.is_set() and not isinstance(future.exception(), urllib.error.HTTPError)):
            self.expire()
            future.add_done_callback(_close_response)
            raise _PastDeadline("no complete answer yet: the status line and headers were still arriving")
        return future.result()


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed or never connected
        pass


def _close_response(future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


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
    """The sha256 of the file at ``path``, 64 lower-case hex digits; read in 1 MiB chunks. Raises ``OSError``
    when it cannot be read."""
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
    watchdog = _Watchdog(bounds.left_s())
    try:
        return _read(url, fh, timeout_s, bounds, dest, key, watchdog)
    except (OSError, http.client.HTTPException) as err:
        # A read ended by the watchdog's shutdown (a reset, a short body): the deadline, not the server.
        if watchdog.expired.is_set() and not isinstance(err, (DownloadError, urllib.error.HTTPError)):
            raise _PastDeadline(f"{_describe(err)} when the deadline shut the connection") from None
        raise
    finally:
        watchdog.close()


def _read(
    url: str, fh, timeout_s: float, bounds: _Bounds, dest: Path, key: str, watchdog: _Watchdog
) -> tuple[str, int]:
    """_fetch_once under ``watchdog``."""
    cap = min((b for b in (bounds.max_bytes, bounds.size) if b is not None), default=None)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest, size = hashlib.sha256(), 0
    with watchdog.open(request, timeout_s) as response:
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
    if watchdog.expired.is_set():  # the body ended because the deadline shut the connection
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
