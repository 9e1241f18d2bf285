"""Retries of remote imagery I/O: the backoff policy, and which failures are worth another attempt.

One policy for STAC searches, asset reads (:mod:`garimpo.imagery.read`) and pinned downloads
(:mod:`garimpo.imagery.download`). Failures are classified, never retried blindly: a network error, HTTP
429 or 5xx is transient; another HTTP error is definitive; an error that is not I/O (a bug) is raised as it
is. What reaches an error or a log line is redacted (:mod:`garimpo.imagery.redact`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from garimpo.errors import ImageryAccessError, InputDataError
from garimpo.imagery.redact import redact

log = logging.getLogger(__name__)
T = TypeVar("T")

Verdict = Literal["retry", "fail", "forbidden", "raise"]

# GDAL's texts for a file that is not there: no later attempt finds it.
_PERMANENT = ("HTTP response code: 404", "No such file or directory", "does not exist in the file system")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff: ``base_delay * 2**(attempt-1)`` seconds, capped at ``max_delay``.

    ``attempts``: tries in all (>= 1). ``timeout``: seconds per HTTP request of a search (or download).
    Raises :class:`InputDataError` when ``attempts`` < 1.
    """

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    timeout: float = 60.0

    def __post_init__(self):
        if self.attempts < 1:
            raise InputDataError(f"retry attempts must be >= 1, got {self.attempts}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): 0..``max_delay``."""
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> RetryPolicy:
        """The policy of an ``imagery.source.retry`` block (``attempts``, ``base_delay_s``, ``max_delay_s``,
        ``timeout_s``; missing keys take the class defaults). Raises :class:`InputDataError` as the class."""
        cfg = cfg or {}
        return cls(
            int(cfg.get("attempts", 4)),
            float(cfg.get("base_delay_s", 1.0)),
            float(cfg.get("max_delay_s", 30.0)),
            float(cfg.get("timeout_s", 60.0)),
        )


def status_of(err: BaseException) -> int | None:
    """The HTTP status an error carries (``status_code``, its ``response``'s, or "HTTP response code: NNN"
    in its text, as GDAL writes it), or None."""
    status = getattr(err, "status_code", None)
    response = getattr(err, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if status is None:
        m = re.search(r"HTTP (?:response code|status)[: ]+(\d{3})", str(err))
        status = int(m.group(1)) if m else None
    return status


def classify_search_error(err: BaseException) -> Verdict:
    """'retry' (network, 429, 5xx), 'fail' (other HTTP/API errors) or 'raise' (not an I/O problem) for
    a failure of a pystac-client search."""
    import requests
    from pystac_client.exceptions import APIError

    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return "retry"
    if isinstance(err, (APIError, requests.RequestException)):
        status = status_of(err)
        return "retry" if status is None or status == 429 or status >= 500 else "fail"
    return "raise"


def classify_read_error(err: BaseException) -> Verdict:
    """'forbidden' (403, an expired SAS token: sign again), 'retry' (network, 429, 5xx, unknown), 'fail'
    (other HTTP errors, a missing file) or 'raise' (not an I/O problem) for a failed raster read."""
    from rasterio.errors import RasterioError

    try:
        from rasterio._err import CPLE_BaseError
    except ImportError:  # pragma: no cover - rasterio internals moved
        CPLE_BaseError = RasterioError
    if not isinstance(err, (RasterioError, CPLE_BaseError, OSError)):
        return "raise"
    status = status_of(err)
    text = str(err)
    if status == 403 or "AuthenticationFailed" in text or "Signature not valid" in text:
        return "forbidden"
    if status is not None and status != 429 and status < 500:
        return "fail"
    if any(p in text for p in _PERMANENT):
        return "fail"
    return "retry"


def retry(
    fn: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    classify: Callable[[BaseException], Verdict],
    sleep: Callable[[float], None] | None = None,
) -> T:
    """``fn()`` up to ``policy.attempts`` times, waiting ``policy.delay(attempt)`` seconds after each
    transient failure (``classify`` says 'retry'); each retry is logged as a WARNING.

    ``what``: the operation, for messages ("STAC search at ..."; never a signed URL). ``sleep``: for tests.
    Raises :class:`ImageryAccessError` (redacted) on a definitive failure or after the last attempt; an
    error classified 'raise' propagates as it is.
    """
    sleep = sleep or time.sleep
    last: BaseException | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below
            verdict = classify(err)
            if verdict == "raise":
                raise
            if verdict != "retry":
                raise ImageryAccessError(f"{what} failed: {type(err).__name__}: {redact(err)}") from None
            last = err
            if attempt < policy.attempts:
                delay = policy.delay(attempt)
                log.warning(
                    "%s failed (attempt %d/%d: %s); retrying in %.2f s",
                    what,
                    attempt,
                    policy.attempts,
                    redact(err)[:300],
                    delay,
                )
                sleep(delay)
    raise ImageryAccessError(
        f"{what} failed after {policy.attempts} attempts; last error: {type(last).__name__}: {redact(last)[:500]}"
    ) from None
