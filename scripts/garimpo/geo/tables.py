"""Reading a user's table (CSV and the like) whatever spreadsheet wrote it: encoding and delimiter.

Spreadsheets set to Portuguese (and most of Europe) export ``;``-separated CSV with decimal commas,
in UTF-8 with a BOM or in Windows-1252; others write ``,`` or tab. Both are found here, or set by the
user; cells are returned as text (numbers are parsed by garimpo.geo.coordinates), each row with the line it
starts on and the number of fields it has (a row split by another delimiter has fewer or more). Workbooks
(.xlsx, .xls, .ods) are refused: they are not text.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from garimpo.errors import InputDataError

log = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t")
# Tried in order when no encoding is set: UTF-8 (a BOM is dropped), Windows-1252, then ISO-8859-1,
# which decodes any byte.
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
SNIFF_LINES = 50
SPREADSHEETS = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
# A workbook under another name (mines.csv) is known by its first bytes: a zip (.xlsx, .ods) or OLE2 (.xls).
SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")


class Table(NamedTuple):
    """A table read as text: ``cells`` (empty cells and cells a short row lacks are ''), indexed by the
    file line each row starts on; ``widths`` (same index) the number of fields each row really has
    (as :func:`_width` counts them); ``problems`` (same index) why a row cannot be trusted whatever its
    cells say ('' for none): a row with a problem must be rejected with it."""

    cells: pd.DataFrame
    widths: pd.Series
    delimiter: str
    encoding: str
    problems: pd.Series


def unclosed_quote(line: int) -> str:
    """The reason a row is rejected when it opens a quoted cell that no quote closes."""
    return f'unclosed quote (") starting on line {line}'


def where(path, key: str | None = None) -> str:
    """A file as errors name it, with the config key it came from (as garimpo.geo.vector names it)."""
    return str(path) + (f" [config {key}]" if key else "")


def decode(data: bytes, path, encoding: str | None = None) -> tuple[str, str]:
    """``(text, encoding used)``. A given ``encoding`` must fit; else the first of ``ENCODINGS`` that does.

    Raises InputDataError naming the file when the given encoding is unknown or does not fit.
    """
    if encoding:
        try:
            codecs.lookup(encoding)
            return data.decode(encoding), encoding
        except LookupError:
            raise InputDataError(f"{path}: unknown encoding {encoding!r}; use e.g. utf-8, cp1252 or latin-1") from None
        except UnicodeDecodeError as exc:
            raise InputDataError(
                f"{path}: not {encoding} ({exc.reason} at byte {exc.start}); fix `encoding` "
                "for this input in the config, or leave it out to have it guessed"
            ) from exc
    for enc in ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if enc != ENCODINGS[0]:
            log.warning("%s: not UTF-8; read as %s (set `encoding` in the config if names look wrong)", path, enc)
        return text, enc
    raise AssertionError("latin-1 decodes every byte")


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``DELIMITERS`` that splits the header into most columns, every sampled row alike.

    Decimal commas make ``;`` files hold commas too, so the count of columns, not of characters, decides:
    a delimiter must give the header more than one column and each of the first rows as many. Without
    such a delimiter, the one giving the header most columns; ``,`` if none splits it.
    """
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    if not lines:
        return ","
    ranked = []
    for rank, delim in enumerate(DELIMITERS):
        widths = [len(row) for row in csv.reader(lines, delimiter=delim)]
        if widths[0] > 1:
            ranked.append((all(w == widths[0] for w in widths), widths[0], -rank, delim))
    return max(ranked)[3] if ranked else ","


def _header(record: list[str]) -> list[str]:
    """Column names stripped of blanks; a repeated name gets .1, .2 ... as pandas gives it."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for name in (c.strip() for c in record):
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}.{seen[name] - 1}")
    return names


def _width(record: list[str], n: int) -> int:
    """The fields of a row, not counting empty ones past the header's ``n`` (a trailing delimiter is harmless)."""
    width = len(record)
    while width > n and not record[width - 1].strip():
        width -= 1
    return width


def read_table(
    path: str | Path, delimiter: str | None = None, encoding: str | None = None, key: str | None = None
) -> Table:
    """The :class:`Table` of a text table; blank lines are skipped, a quoted cell may span lines.

    Rows are not made to fit the header (pandas would refuse the whole file for one long row): the
    caller sees each row's width and rejects that row. A quote that opens a cell and is never closed
    properly (the file ends inside it, or what closes it is followed by more text: the opening quote of
    a later row's cell) would make the csv module read every line up to there as one cell, so those rows
    would be lost: that row gets the problem :func:`unclosed_quote` (its cells are its own line's) and the
    lines after it are read as rows again (a warning names the line). ``key`` is named in errors. Raises
    InputDataError naming the file for a workbook (export it as CSV), an unknown or wrong ``encoding``,
    an empty file, or text the csv module cannot split.
    """
    path = Path(path)
    data = path.read_bytes()
    if path.suffix.lower() in SPREADSHEETS or data.startswith(SPREADSHEET_MAGIC):
        raise InputDataError(
            f"{where(path, key)}: a spreadsheet workbook, not a text table; export it as CSV "
            "(in the spreadsheet: Save As > CSV UTF-8) and give that file in the config"
        )
    text, encoding = decode(data, where(path, key), encoding)
    delimiter = delimiter or sniff_delimiter(text)
    lines = list(io.StringIO(text, newline=None))  # universal newlines: \r too; each line keeps its \n
    records: list[tuple[int, list[str], str]] = []  # (file line, fields, problem)
    start: int | None = 0  # index in ``lines`` the reader starts at (again, after an unclosed quote)
    while start is not None:
        start = _read_records(lines, start, delimiter, records, where(path, key))
    if not records:
        raise InputDataError(f"{where(path, key)}: empty; a table needs a header line and a row per point")
    columns = _header(records[0][1])
    n = len(columns)
    rows = records[1:]
    index = [line for line, _, _ in rows]
    cells = pd.DataFrame([(r + [""] * n)[:n] for _, r, _ in rows], columns=columns, index=index, dtype=object)
    widths = pd.Series([_width(r, n) for _, r, _ in rows], index=index, dtype=int)
    problems = pd.Series([problem for _, _, problem in rows], index=index, dtype=object)
    return Table(cells, widths, delimiter, encoding, problems)


def _read_records(lines: list[str], start: int, delimiter: str, records: list, name: str) -> int | None:
    """Append the records of ``lines[start:]`` to ``records`` as (file line, fields, problem); stop at a
    record an unclosed quote made of several lines, and return the index to read again from (its next
    line), or None at the end."""
    reader = csv.reader(lines[start:], delimiter=delimiter)
    done = start  # lines consumed before the record being read
    try:
        for record in reader:
            end = start + reader.line_num  # lines consumed once this record is read
            if end - done > 1 or end == len(lines):  # spans lines, or ends the file: was a quote left open?
                chunk = lines[done:end]
                if _quote_left_open(chunk, delimiter):
                    first = chunk[0].rstrip("\n")
                    records.append(
                        (done + 1, next(csv.reader([first], delimiter=delimiter), []), unclosed_quote(done + 1))
                    )
                    log.warning(
                        '%s: line %d opens a quoted cell (") that is never closed; that row is rejected and the '
                        "lines after it are read as rows (close the quote, or remove it)",
                        name,
                        done + 1,
                    )
                    return done + 1 if end - done > 1 else None
            if record:
                records.append((done + 1, record, ""))
            done = end
    except csv.Error as exc:
        raise InputDataError(
            f"{name}: not a table with delimiter {delimiter!r} (line {done + 1}: "
            f"{exc}); set `delimiter` for this input in the config"
        ) from exc
    return None


def _quote_left_open(chunk: list[str], delimiter: str) -> bool:
    """True when the record of ``chunk`` (its lines) has a quoted cell that the file ends inside, or (a record
    of several lines) one that a quote followed by more text closes: what a stray opening quote looks like
    to the csv module, which reads on to the next quote (the opening quote of a later row's cell). A quoted
    cell that really spans lines ends with a quote followed by the delimiter or the line's end; a single
    line with a stray quote inside a cell (``"12°30'00"S``) is left as it was read."""
    try:
        for _ in csv.reader(chunk, delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return len(chunk) > 1 or "unexpected end of data" in str(exc)
    return False
