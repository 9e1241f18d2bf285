"""Credentials out of every text a user may see: log lines, error messages, tracebacks.

Signed hrefs carry their secret in the query string (Planetary Computer SAS tokens ``st, se, sp, sv,
sr, skoid, ..., sig``; AWS presigned ``X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token``),
sometimes in the userinfo (``user:pass@host``) or the fragment (``#access_token=``). The rule is the
conservative one: every URL loses its userinfo, its whole query string and its fragment, whatever form
the URL is written in (any scheme, any letter case; percent-encoded once or more, as in GDAL's
``/vsicurl?url=https%3A%2F%2F...``; JSON with escaped slashes ``https:\\/\\/``). As a second net, any
``name=value`` (plain or percent-encoded), ``name: value``, ``"name": "value"`` or ``Authorization:``
header whose name is a known secret (:data:`SECRET_NAME`) has its value replaced by ``***``, URL or not;
spaces or tabs around the ``=`` or ``:`` (``sig = X``, ``sig\t=X``, ``'sig' = 'X'``) and quotes around
the value change nothing. This also masks a word after ``key:`` in ordinary text or a traceback's source
line (``key: str``): a value too many rather than a secret too few.

:class:`RedactFilter` applies this to a whole log record (message with its args, the traceback of
``exc_info``, ``stack_info``); :func:`install_redaction` puts it on handlers and loggers. Standard
library only, so any module can import it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"

# One character of a URL as it may be written: plain, percent-encoded (also twice or more: %253F),
# JSON-escaped (\/ or \u002f) or Python-repr-escaped (\\/).
_ENC = r"%(?:25)*"
_SLASH = rf"(?:\\*/|{_ENC}2[Ff]|\\*u002[Ff])"
_COLON = rf"(?::|{_ENC}3[Aa]|\\*u003[Aa])"
_QUERY = rf"(?:\?|{_ENC}3[Ff]|\\*u003[Ff])"
_FRAGMENT = rf"(?:#|{_ENC}23|\\*u0023)"
_AT = rf"(?:@|{_ENC}40|\\*u0040)"
_AMP = rf"(?:&|{_ENC}26|\\*u0026)"
_EQUALS = rf"(?:=|{_ENC}3[Dd]|\\*u003[Dd])"
_STOP = "\\s'\"<>`"  # what ends a URL in running text

# A scheme is at most 32 characters here, which keeps the search linear in long words.
_URL = re.compile(rf"(?P<head>[A-Za-z][A-Za-z0-9+.\-]{{0,31}}{_COLON}{_SLASH}{_SLASH})(?P<rest>[^{_STOP}]*)")
_AUTHORITY_END = re.compile(rf"{_SLASH}|{_QUERY}|{_FRAGMENT}")
_AT_SIGN = re.compile(_AT)
_QUERY_OR_FRAGMENT = re.compile(rf"{_QUERY}|{_FRAGMENT}")
# GDAL's option syntax: /vsicurl?url=<percent-encoded URL>&use_head=no&header.Authorization=...
_VSI_OPTIONS = re.compile(rf"(?P<prefix>/vsi[a-z0-9_]+)\?(?P<options>[^{_STOP}]*)", re.IGNORECASE)
_VSI_URL = re.compile(rf"url{_EQUALS}", re.IGNORECASE)
_AMP_SPLIT = re.compile(_AMP)

# Names whose value is a secret. Azure SAS (Planetary Computer) parameters, AWS and Google presigned
# URLs, and anything named like a token, key, secret, signature, password or credential.
_SAS_NAMES = (
    "sig|se|st|sp|sv|sr|spr|srt|ss|si|sip|sdd|ses|skoid|sktid|skt|ske|sks|skv|saoid|suoid|scid|rscc|rscd|rsce|rscl|rsct"
)
SECRET_NAME = (
    rf"(?:(?:{_SAS_NAMES})(?![\w.-])|x-(?:amz|goog|ms)-[\w-]+|"
    r"[\w.-]{0,64}?(?:token|key|secret|signature|password|passwd|pwd|credentials?|auth|authorization|"
    r"session))"
)
_BEFORE = rf"(?:(?<=[?&;,\s\"'(\[{{/])|^|{_ENC}3[Ff]|{_ENC}26|\\*u0026)"
# Between a name and its value: '=' (or an encoded one) or ':', with a few spaces or tabs either side
# (bounded, so a long run of blanks after a name costs a bounded look, and the search stays linear).
_GAP = r"[ \t]{0,16}"
_SEP = rf"{_GAP}(?:{_EQUALS}|:){_GAP}"
# "Authorization: Bearer X" keeps its scheme word: _HEADER masks X.
_SCHEME_WORD = r"(?:bearer|basic|sharedkey|token)\s"
_NAME_VALUE = re.compile(
    rf"(?P<name>{_BEFORE}{SECRET_NAME}{_SEP}(?!{_SCHEME_WORD})[\"']?)"
    rf"(?P<value>(?:(?!{_AMP}|{_FRAGMENT})[^{_STOP}])+)",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTED_PAIR = re.compile(
    rf"(?P<name>(?P<q>[\"']){SECRET_NAME}(?P=q){_GAP}[:=]{_GAP})(?P<v>[\"'])(?:(?!(?P=v)).)*(?P=v)", re.IGNORECASE
)
# HTTP headers: Authorization (with its scheme word kept), Bearer tokens, X-Api-Key-like names.
_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization\s*[:=]\s*(?:(?:bearer|basic|sharedkey|token)\s+)?"
    r"|\bbearer\s+|\b[\w-]{0,64}[-_](?:key|token|secret|signature|credential|password)\s*:\s*)"
    r"(?P<value>[^\s'\",]+)",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = re.compile(r"[)\]}.,;:!]+$")


def _strip_url(m: re.Match) -> str:
    head, rest = m.group("head"), m.group("rest")
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    ats = list(_AT_SIGN.finditer(authority))
    if ats:  # user:password@host
        rest = rest[ats[-1].end() :]
    cut = _QUERY_OR_FRAGMENT.search(rest)
    if not cut:
        return head + rest
    tail = _TRAILING_PUNCTUATION.search(rest[cut.start() :])  # "(see https://h/a?sig=x)." keeps its ")."
    return head + rest[: cut.start()] + (tail.group() if tail else "")


def _strip_vsi_options(m: re.Match) -> str:
    kept = [o for o in _AMP_SPLIT.split(m.group("options")) if _VSI_URL.match(o)]
    return m.group("prefix") + "?" + "&".join(kept[:1])


def redact(text: object, *secrets: str) -> str:
    """``str(text)`` with every URL's userinfo, query string and fragment removed and every secret value
    (see the module doc) replaced by ``***``; each of ``secrets`` (e.g. the signed href just read) is
    replaced by its redacted form first, also where it appears percent-encoded. Never raises on text."""
    out = str(text)
    for secret in secrets:
        if secret:
            for form in dict.fromkeys((secret, quote(secret, safe=""), quote(secret, safe="/:"))):
                out = out.replace(form, redact_url(form))
    # Pairs are masked before URLs are cut too: a URL ends at whitespace, so cutting `?sig = X` first would
    # leave `= X` outside the URL with its name gone.
    out = _mask_pairs(out)
    out = _VSI_OPTIONS.sub(_strip_vsi_options, out)
    out = _URL.sub(_strip_url, out)
    return _mask_pairs(out)


def _mask_pairs(out: str) -> str:
    out = _QUOTED_PAIR.sub(lambda m: m.group("name") + m.group("v") + MASK + m.group("v"), out)
    out = _HEADER.sub(lambda m: m.group("name") + MASK, out)
    return _NAME_VALUE.sub(lambda m: m.group("name") + MASK, out)


def redact_url(url: object) -> str:
    """``url`` without userinfo, query string or fragment (where tokens live); safe to log.

    A plain path (no ``scheme://``) loses what follows a ``?``.
    """
    text = str(url)
    if not _URL.search(text) and not _VSI_OPTIONS.search(text):
        text = text.split("?", 1)[0]
    return redact(text)


_FORMATTER = logging.Formatter()


class RedactFilter(logging.Filter):
    """Redacts a log record in place, so every handler after it prints no credential.

    The message is formatted with its args and redacted (args emptied); the traceback of ``exc_info`` is
    formatted into ``exc_text``, redacted, and ``exc_info`` dropped (a handler formatting the exception
    again would print the secrets it holds); ``stack_info`` is redacted. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - args that do not fit the format: logging would print both
            message = f"{record.msg} (log arguments: {record.args!r})"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            if not record.exc_text:
                try:
                    record.exc_text = _FORMATTER.formatException(record.exc_info)
                except Exception:  # noqa: BLE001 - a traceback that cannot be formatted is not printed
                    record.exc_text = f"(traceback of {record.exc_info[0]!r} could not be formatted)"
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


REDACT_FILTER = RedactFilter()


def install_redaction(handlers: Iterable[logging.Handler] | None = None, loggers: Iterable[str] = ()) -> None:
    """Put :data:`REDACT_FILTER` on ``handlers`` (default: the root logger's) and on the named loggers.

    A filter on a handler sees every record the handler prints, whichever logger it came from; one on a
    logger sees only the records logged on that very logger (not its children's), so handlers are the
    place. Idempotent.
    """
    # Handlers and loggers alike are Filterers: both take addFilter.
    targets: list[logging.Filterer] = list(logging.root.handlers if handlers is None else handlers)
    targets += [logging.getLogger(name) for name in loggers]
    for target in targets:
        if REDACT_FILTER not in target.filters:
            target.addFilter(REDACT_FILTER)


# rasterio's loggers that name a file: its GDAL error and debug lines carry the signed href.
_RASTERIO_LOGGERS = frozenset(
    {
        "rasterio",
        "rasterio._base",
        "rasterio._io",
        "rasterio._warp",
        "rasterio._env",
        "rasterio.env",
        "rasterio._err",
        "rasterio._filepath",
        "rasterio.vrt",
        "rasterio.io",
        "rasterio._path",
    }
)


def install_raster_redaction() -> None:
    """:func:`install_redaction` on every handler of the root logger (whoever logs) and on every rasterio
    logger (those above and any other already created), where it is not already. Idempotent."""
    names = _RASTERIO_LOGGERS | {n for n in list(logging.root.manager.loggerDict) if n.startswith("rasterio")}
    install_redaction(None, sorted(names))
