"""One latitude or longitude as people type them: decimal degrees or degrees-minutes-seconds.

Accepted: ``-6.2512``, ``-6,2512`` (decimal comma), ``-1,234.5`` (thousands separators), ``−6.25``
(Unicode minus), and DMS such as ``06°15'04.3"S``, ``7º06'01.8" S``, ``6° 15′ 4.3″ S``, ``S 6 15 4.3``,
``-6°15.07'`` (decimal minutes) or ``6.2512°S``. Degree signs ``°`` ``º`` ``˚``; minutes ``'`` ``′``
``’``; seconds ``"`` ``″`` ``”`` or two primes. Hemisphere letters N, S, E, W, and the Portuguese O
(oeste, west) and L (leste, east), before or after the number, with or without a space: S, W and O
are negative. A value that is none of these raises :class:`CoordinateError` with the precise reason.
"""

from __future__ import annotations

import math
import re

from garimpo.errors import CoordinateError

HEMISPHERES = {"N": ("lat", 1), "S": ("lat", -1), "E": ("lon", 1), "L": ("lon", 1), "W": ("lon", -1), "O": ("lon", -1)}
AXIS_NAMES = {"lat": "latitude", "lon": "longitude"}
LIMITS = {"lat": 90.0, "lon": 180.0}

_NUM = r"(\d+(?:[.,]\d+)?)"
_DMS = re.compile(
    rf"""^{_NUM}\s*(?:[°º˚]\s*|\s+|(?=$))           # degrees, then a degree sign or a space
         (?:{_NUM}\s*(?:['′’](?!['′’])\s*|\s+|(?=$))  # minutes, then a prime or a space
            (?:{_NUM}\s*(?:["″”]|['′’]{{2}})?)?       # seconds, then a double prime
         )?$""",
    re.X,
)


def _decimal(text: str) -> float | None:
    """Plain decimal degrees, or None when ``text`` is not one."""
    t = text.replace(" ", "")
    if t.count(",") == 1 and "." not in t:
        t = t.replace(",", ".")  # decimal comma: -6,25
    elif re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?", t):
        t = t.replace(",", "")  # thousands separators: 1,234.5
    try:
        value = float(t)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _hemisphere(text: str, axis: str) -> tuple[str, int | None]:
    """``text`` without its hemisphere letter, and the sign the letter gives (None when there is none)."""
    letters = [(m.start(), m.group()) for m in re.finditer(r"[A-Za-z]", text)]
    if not letters:
        return text, None
    ends = {0, len(text) - 1}
    if len(letters) > 2 or any(pos not in ends for pos, _ in letters):
        raise CoordinateError("not a number nor degrees-minutes-seconds")
    if len(letters) == 2:
        raise CoordinateError("two hemisphere letters")
    pos, letter = letters[0]
    if letter.upper() not in HEMISPHERES:
        raise CoordinateError(f"unknown hemisphere letter {letter!r} (use N, S, E, W; O or L)")
    letter_axis, sign = HEMISPHERES[letter.upper()]
    if letter_axis != axis:
        raise CoordinateError(f"hemisphere {letter.upper()!r} belongs to a {AXIS_NAMES[letter_axis]}")
    return (text[1:] if pos == 0 else text[:-1]).strip(), sign


def parse_coordinate(value, axis: str) -> float:
    """Degrees (float) from a number or a text, for ``axis`` 'lat' or 'lon'.

    Raises :class:`CoordinateError` whose message is the reason: missing, not a number nor DMS,
    minutes or seconds >= 60, a hemisphere letter of the other axis, a sign that contradicts the letter,
    degrees above 90 (latitude) or 180 (longitude) in DMS. Plain decimal numbers are not range-checked
    here (see ``points.check_coordinates``, which tells a lost decimal point from swapped columns).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise CoordinateError("missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().replace("\u2212", "-").replace("\u2013", "-")
    if not text:
        raise CoordinateError("missing")
    plain = _decimal(text)
    if plain is not None:
        return plain
    rest, letter_sign = _hemisphere(text, axis)
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:].lstrip()
    if sign < 0 and letter_sign == 1:
        raise CoordinateError("a minus sign with a north/east hemisphere letter")
    match = _DMS.match(rest)
    if not match:
        raise CoordinateError("not a number nor degrees-minutes-seconds")
    deg, minutes, seconds = match.groups()
    if minutes is not None and re.search(r"[.,]", deg):
        raise CoordinateError("decimal degrees followed by minutes")
    if seconds is not None and re.search(r"[.,]", minutes):
        raise CoordinateError("decimal minutes followed by seconds")
    d = _number(deg)
    m = _number(minutes) if minutes is not None else 0.0
    s = _number(seconds) if seconds is not None else 0.0
    if m >= 60:
        raise CoordinateError("minutes >= 60")
    if s >= 60:
        raise CoordinateError("seconds >= 60")
    degrees = d + m / 60 + s / 3600
    if degrees > LIMITS[axis]:
        raise CoordinateError(f"more than {LIMITS[axis]:.0f} degrees")
    return -degrees if sign < 0 or letter_sign == -1 else degrees
