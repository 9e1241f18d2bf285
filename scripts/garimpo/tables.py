"""Reading a user's table (CSV and the like) whatever spreadsheet wrote it: encoding and delimiter.

Spreadsheets set to Portuguese (and most of Europe) export ``;``-separated CSV with decimal commas,
in UTF-8 with a BOM or in Windows-1252; others write ``,`` or tab. Both are found here, or set by the
user; cells are returned as text (numbers are parsed by garimpo.coordinates).
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from pathlib import Path

import pandas as pd

from .errors import InputDataError

log = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t")
# Tried in order when no encoding is set: UTF-8 (a BOM is dropped), Windows-1252, then ISO-8859-1,
# which decodes any byte.
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
SNIFF_LINES = 50


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
            raise InputDataError(f"{path}: not {encoding} ({exc.reason} at byte {exc.start}); fix `encoding` "
                                 "for this input in the config, or leave it out to have it guessed") from exc
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


def read_table(path: str | Path, delimiter: str | None = None, encoding: str | None = None
               ) -> tuple[pd.DataFrame, str, str]:
    """``(cells as text, delimiter used, encoding used)``; column names stripped of blanks.

    Empty cells are ''. Raises InputDataError naming the file when it cannot be parsed as a table.
    """
    path = Path(path)
    text, encoding = decode(path.read_bytes(), path, encoding)
    delimiter = delimiter or sniff_delimiter(text)
    try:
        table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputDataError(f"{path}: not a table with delimiter {delimiter!r} ({exc}); set `delimiter` for this "
                             "input in the config") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table, delimiter, encoding
