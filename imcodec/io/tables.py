"""Rate-distortion tables: CSV or JSON files read into columns.

Accepted layouts (all give the same result)::

    bpp,d1_psnr            [{"bpp": 0.1, "d1_psnr": 60.2}, ...]      # JSON: list of row objects
    0.1,60.2               {"bpp": [0.1, ...], "d1_psnr": [...]}     # JSON: object of columns
    ...                    {"rows": [{"bpp": 0.1, ...}, ...]}        # JSON: {"rows": [...]}

CSV: the first non-blank, non-``#`` line is the header; the delimiter (``,``, ``;`` or tab) is
detected from it. Cells that parse as numbers become floats, others stay strings (``"inf"`` is kept
as the float ``inf``; an empty cell stays ``""``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from imcodec.errors import InputError
from imcodec.io.files import read_bytes


def read_rd_table(path: str | os.PathLike) -> dict[str, list]:
    """Read an RD table into ``{column name: list of values}`` (every list the same length, >= 1).

    The format is chosen by suffix (``.json`` / ``.csv``, anything else by content).
    Raises InputError naming the file for a missing/unreadable file, bad JSON, an empty table,
    ragged rows or duplicate column names.
    """
    path = Path(path)
    data = read_bytes(path, what="RD table")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: RD table is not UTF-8 text (byte {exc.start})") from None
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix != ".csv" and text.lstrip()[:1] in ("[", "{")):
        table = _from_json(path, text)
    else:
        table = _from_csv(path, text)
    if not table:
        raise InputError(f"{path}: RD table has no columns")
    lengths = {len(v) for v in table.values()}
    if lengths == {0}:
        raise InputError(f"{path}: RD table is empty (no rows)")
    return table


# --------------------------------------------------------------------------------------------- CSV

def _number(cell: str) -> Any:
    s = cell.strip()
    if not s:
        return ""
    try:
        return float(s)
    except ValueError:
        return s


def _from_csv(path: Path, text: str) -> dict[str, list]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"{path}: RD table is empty (no header row)")
    header_line = lines[0]
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    delim = max(counts, key=counts.get) if max(counts.values()) else ","
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delim))
    header = [h.strip() for h in rows[0]]
    _check_names(path, header)
    cols: dict[str, list] = {h: [] for h in header}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) == len(header) + 1 and not row[-1].strip():
            row = row[:-1]  # tolerate one trailing delimiter
        if len(row) != len(header):
            raise InputError(f"{path}: data row {lineno - 1} has {len(row)} cells, the header has "
                             f"{len(header)} ({delim!r}-separated)")
        for h, cell in zip(header, row):
            cols[h].append(_number(cell))
    return cols


def _check_names(path: Path, names: list[str]) -> None:
    if any(not n for n in names):
        raise InputError(f"{path}: RD table header has an empty column name: {names}")
    seen = set()
    for n in names:
        if n in seen:
            raise InputError(f"{path}: RD table has the column {n!r} twice")
        seen.add(n)


# -------------------------------------------------------------------------------------------- JSON

def _from_json(path: Path, text: str) -> dict[str, list]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: bad JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(obj, dict) and "rows" in obj:
        obj = obj["rows"]
        if not isinstance(obj, list):
            raise InputError(f'{path}: "rows" must be a list of row objects, got {type(obj).__name__}')
    if isinstance(obj, list):
        return _rows_to_columns(path, obj)
    if isinstance(obj, dict):
        return _columns(path, obj)
    raise InputError(f"{path}: JSON RD table must be a list of rows or an object of columns, "
                     f"got {type(obj).__name__}")


def _scalar(path: Path, where: str, v: Any) -> Any:
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    raise InputError(f"{path}: {where} holds a {type(v).__name__}, expected a number or string")


def _rows_to_columns(path: Path, rows: list) -> dict[str, list]:
    if not rows:
        raise InputError(f"{path}: RD table is empty (no rows)")
    names: list[str] | None = None
    cols: dict[str, list] = {}
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: row {i} is a {type(row).__name__}, expected an object")
        keys = list(row)
        if names is None:
            names = keys
            _check_names(path, names)
            cols = {k: [] for k in names}
        elif set(keys) != set(names):
            missing = sorted(set(names) - set(keys))
            extra = sorted(set(keys) - set(names))
            raise InputError(f"{path}: row {i} has different columns than row 1 "
                             f"(missing {missing}, extra {extra})")
        for k in names:
            cols[k].append(_scalar(path, f"row {i} column {k!r}", row[k]))
    return cols


def _columns(path: Path, obj: dict) -> dict[str, list]:
    _check_names(path, list(obj))
    cols: dict[str, list] = {}
    length = None
    for k, v in obj.items():
        if not isinstance(v, list):
            raise InputError(f"{path}: column {k!r} is a {type(v).__name__}, expected a list")
        if length is None:
            length = len(v)
        elif len(v) != length:
            raise InputError(f"{path}: column {k!r} has {len(v)} values, column "
                             f"{next(iter(obj))!r} has {length}")
        cols[k] = [_scalar(path, f"column {k!r} item {j}", x) for j, x in enumerate(v)]
    if not length:
        raise InputError(f"{path}: RD table is empty (no rows)")
    return cols

