"""Detection periods: named date ranges (a year, a quarter, a month, or any start..end), in time order.

Each period gets its own composite, scan and detections per cell; the change products compare them. Names
are path parts (``results/detections/{region}/{period}.geojson``), so they are limited to letters, digits,
``_`` and ``-``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from garimpo.errors import InputDataError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # also the Snakefile's wildcard constraint
_YEAR = re.compile(r"(\d{4})")
_QUARTER = re.compile(r"(\d{4})Q([1-4])")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
# Names of files the change products write beside the periods' (results/change/{region}/NAME.geojson).
RESERVED = ("footprint",)
# Sentinel-2A was launched on 2015-06-23 (ESA): a period ending before it holds no scene.
SENTINEL2_LAUNCH = date(2015, 6, 23)


@dataclass(frozen=True)
class Period:
    """One detection period: ``name`` (a path part), ``start`` and ``end`` dates, both included."""

    name: str
    start: date
    end: date

    @property
    def dates(self) -> tuple[str, str]:
        """(start, end) as ISO dates, what an imagery search takes."""
        return self.start.isoformat(), self.end.isoformat()

    def as_dict(self) -> dict[str, str]:
        """``{"name", "start", "end"}`` (ISO dates), for JSON metadata."""
        return {"name": self.name, "start": self.start.isoformat(), "end": self.end.isoformat()}


def _named(name: str) -> tuple[date, date] | None:
    """The dates a period's name implies (``2024`` a year, ``2025Q1`` a quarter, ``2025-03`` a month), or None
    (also for a year Python's dates cannot hold, such as 0000)."""
    try:
        return _named_dates(name)
    except ValueError:
        return None


def _named_dates(name: str) -> tuple[date, date] | None:
    if m := _YEAR.fullmatch(name):
        year = int(m[1])
        return date(year, 1, 1), date(year, 12, 31)
    if m := _QUARTER.fullmatch(name):
        year, q = int(m[1]), int(m[2])
        first = 3 * q - 2
        return date(year, first, 1), date(year, first + 2, calendar.monthrange(year, first + 2)[1])
    if (m := _MONTH.fullmatch(name)) and 1 <= int(m[2]) <= 12:
        year, month = int(m[1]), int(m[2])
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
    return None


def _day(text: Any, where: str) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError as err:
        raise InputDataError(f"config {where}: {text!r} is not a date ({err}); write it as YYYY-MM-DD") from err


def parse_periods(spec: Sequence[Any], key: str = "periods") -> list[Period]:
    """The periods of config ``periods``, checked, in the order given.

    ``spec``: a list whose entries are a name that implies its dates (``"2024"``: the year;
    ``"2025Q1"``: January to March; ``"2025-03"``: the month) or a mapping ``{name, start, end}``
    (ISO dates, both included), e.g. ``{name: 2024dry, start: "2024-06-01", end: "2024-10-31"}``. A name that
    implies dates (``2024``) may not be given other ones, and ``footprint`` is taken by the cumulative footprint.

    Raises:
        InputDataError: an entry is neither; a name is not a path part (letters, digits, ``_``, ``-``) or is
            repeated; a date is not one; a start is after its end; an end is before Sentinel-2A's launch
            (2015-06-23); periods are not in time order or overlap. The message names ``key[i]``.
    """
    periods: list[Period] = []
    for i, entry in enumerate(spec):
        where = f"{key}[{i}]"
        if isinstance(entry, Mapping):
            name = str(entry.get("name", ""))
            if "start" not in entry or "end" not in entry:
                raise InputDataError(f"config {where}: {dict(entry)} needs name, start and end (YYYY-MM-DD)")
            start, end = _day(entry["start"], f"{where}.start"), _day(entry["end"], f"{where}.end")
        else:
            name = str(entry)
            implied = _named(name)
            if implied is None:
                raise InputDataError(
                    f"config {where}: {name!r} does not name its dates; write a year (2024), a quarter (2025Q1), "
                    f"a month (2025-03), or {{name: {name}, start: YYYY-MM-DD, end: YYYY-MM-DD}}"
                )
            start, end = implied
        if not NAME.fullmatch(name):
            raise InputDataError(
                f"config {where}: the name {name!r} becomes part of file paths; use letters, digits, '_' and '-' "
                "only, starting with a letter or digit"
            )
        if name in RESERVED:
            raise InputDataError(
                f"config {where}: the name {name!r} is taken (results/change/REGION/{name}.geojson is the cumulative "
                "footprint); choose another name"
            )
        implied = _named(name)
        if implied is not None and implied != (start, end):
            raise InputDataError(
                f"config {where}: the name {name} means {implied[0]}..{implied[1]}, not {start}..{end}; "
                "give the period a name that does not read as other dates (e.g. " + f"{name}x), or write just {name!r}"
            )
        if start > end:
            raise InputDataError(f"config {where}: {name} starts {start} after it ends {end}; swap them")
        if end < SENTINEL2_LAUNCH:
            raise InputDataError(
                f"config {where}: {name} ends {end}, before Sentinel-2A's launch on {SENTINEL2_LAUNCH}; "
                "no scene can match"
            )
        if any(p.name == name for p in periods):
            raise InputDataError(f"config {where}: the period name {name} is used twice; each name must be unique")
        if periods and start <= periods[-1].end:
            before = periods[-1]
            raise InputDataError(
                f"config {where}: {name} ({start}..{end}) "
                + ("overlaps" if start >= before.start else "comes before")
                + f" {before.name} ({before.start}..{before.end}); list periods in time order, without overlap"
            )
        periods.append(Period(name, start, end))
    if not periods:
        raise InputDataError(f"config {key}: no period; list at least one, e.g. ['2024']")
    return periods


def period_names(spec: Sequence[Any]) -> list[str]:
    """The names of config ``periods`` in time order (what the workflow expands over)."""
    return [p.name for p in parse_periods(spec)]


def earlier(periods: Sequence[Period], name: str) -> list[Period]:
    """The periods before ``name``, latest first (the order the change logic looks back in).

    Raises:
        KeyError: ``name`` is not one of ``periods``.
    """
    names = [p.name for p in periods]
    if name not in names:
        raise KeyError(f"period {name!r} is not one of {names}")
    return list(reversed(periods[: names.index(name)]))
