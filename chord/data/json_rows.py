"""Local .json / .jsonl files read by chord itself, so one bad line is a counted skip, not a crash.

`datasets`' json builder parses a whole file into Arrow: one malformed line, a truncated file or a
column whose rows disagree on a type kills the run with a traceback. Here a JSON Lines file is read
line by line: a line that is not JSON is counted as `bad_json`, one that is not an object as
`not_an_object` (the loaders add these counts to their skip report). A `.json` file holds a list of
row objects (or a JSON Lines body, as `datasets` also accepts); a truncated or empty file is a
one-line DataError.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path


class DataError(ValueError):
    """Unusable data; one-line message."""




class Rows:
    """Rows as plain dicts (types exactly as in the file) with the few `datasets.Dataset` methods chord uses."""

    def __init__(self, rows: list[dict], bad: Counter | None = None, first_bad: str = "") -> None:
        self.rows = rows
        self.bad = bad if bad is not None else Counter()  # skip reason -> lines, for the skip report
        self.first_bad = first_bad  # where the first bad line is, for error messages

    @property
    def column_names(self) -> list[str]:
        return list(dict.fromkeys(k for row in self.rows for k in row))

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]

    def select(self, indices: Iterable[int]) -> Rows:
        return Rows([self.rows[i] for i in indices], self.bad, self.first_bad)

    def select_columns(self, columns: list[str]) -> Rows:
        return Rows([{c: row.get(c) for c in columns} for row in self.rows], self.bad, self.first_bad)


def _lines(lines: Iterable[bytes]) -> Rows:
    rows, bad, first_bad = [], Counter(), ""
    for n, raw in enumerate(lines, 1):
        if n == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue  # blank lines (a trailing newline, a separator) are not rows
        try:
            row = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            bad["bad_json"] += 1
            first_bad = first_bad or f"line {n}: {str(e).splitlines()[0]}"
            continue
        if not isinstance(row, dict):
            bad["not_an_object"] += 1
            first_bad = first_bad or f"line {n}: a JSON {type(row).__name__}, not an object"
            continue
        rows.append(row)
    return Rows(rows, bad, first_bad)


def _document(path: Path, text: str) -> Rows:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DataError(f"data file '{path}': malformed JSON ({str(e).splitlines()[0]}); is it truncated?") from None
    if isinstance(doc, dict):
        cols = list(doc.values())
        if cols and all(isinstance(c, list) and len(c) == len(cols[0]) for c in cols):  # {"col": [...], ...}
            return Rows([dict(zip(doc, values, strict=True)) for values in zip(*cols, strict=True)])
        return Rows([doc])
    if not isinstance(doc, list):
        raise DataError(f"data file '{path}': holds a JSON {type(doc).__name__}; expected a list of row objects")
    bad = Counter(not_an_object=sum(not isinstance(r, dict) for r in doc))
    return Rows([r for r in doc if isinstance(r, dict)], +bad, "a list item that is not an object" if +bad else "")


def read_json_rows(path: Path) -> Rows:
    """Rows of one .json or .jsonl file; bad lines counted, an unusable file a one-line DataError."""
    try:
        if path.suffix == ".jsonl":  # streamed: a multi-GB file is never held twice
            with open(path, "rb") as f:
                return _check(path, _lines(f), "is empty" + ("" if path.stat().st_size == 0 else " (only whitespace)"))
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    except OSError as e:
        raise DataError(f"data file '{path}': cannot read ({e.strerror or type(e).__name__})") from None
    if not data.strip():
        raise DataError(f"data file '{path}' is empty" + (" (only whitespace)" if data else ""))
    try:
        return _check(path, _document(path, data.decode("utf-8")), "holds no rows")
    except UnicodeDecodeError as e:
        raise DataError(f"data file '{path}': not UTF-8 text ({e.reason} at byte {e.start})") from None
    except DataError:
        if data.lstrip()[:1] == b"[":  # a list cut short: the file is truncated
            raise
    return _check(path, _lines(data.splitlines()), "holds no rows")  # JSON Lines in a .json file
                                                                     # (datasets reads those too)


def _check(path: Path, rows: Rows, no_rows: str) -> Rows:
    if not rows.rows and not rows.bad:
        raise DataError(f"data file '{path}' {no_rows}")
    if not rows.rows:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(rows.bad.items()))
        raise DataError(f"data file '{path}': no usable rows ({counts}; first at {rows.first_bad})")
    return rows
