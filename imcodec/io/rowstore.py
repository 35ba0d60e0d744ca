"""Result rows on disk: a CSV table rewritten atomically, plus one small JSON "part" file per row.

Used by the benchmark runner (:mod:`imcodec.bench.runner`): each finished task is first written as
its own part file (atomic rename, so a part is either complete or absent), and the parts are merged
into the CSV by rewriting the whole table atomically. A crash at any moment therefore leaves the CSV
as it was before or after a merge, never with a partial row, and no finished task is lost.

Cells are strings here; typing belongs to the caller.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from imcodec.errors import InputError
from imcodec.io.files import ensure_dir, read_bytes, write_text_atomic

PART_SUFFIX = ".json"


def read_csv_rows(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file; rows map column -> cell text. A missing file gives ([], []).

    Raises InputError naming the file for undecodable text, a duplicated column or a row whose cell
    count differs from the header's.
    """
    path = Path(path)
    if not path.exists():
        return [], []
    data = read_bytes(path, what="results table")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: results table is not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text))
    rows = [r for r in reader if r and any(c.strip() for c in r)]
    if not rows:
        return [], []
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise InputError(f"{path}: results table header is malformed: {header}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"{path}: row {lineno} has {len(row)} cells, the header has {len(header)} "
                             "(a damaged or hand-edited table)")
        out.append(dict(zip(header, row)))
    return header, out


def write_csv_rows(path: str | os.PathLike, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (column -> already formatted cell text) under ``header``, atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header])
    write_text_atomic(path, buf.getvalue())


def write_part(folder: str | os.PathLike, name: str, obj: dict[str, Any]) -> Path:
    """Write one JSON part file ``folder/name.json`` atomically (the folder is created if needed)."""
    folder = ensure_dir(folder)
    path = folder / f"{name}{PART_SUFFIX}"
    write_text_atomic(path, json.dumps(obj, allow_nan=True))
    return path


def read_parts(folder: str | os.PathLike) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """(good, bad): the readable part files of ``folder`` with their objects, and the unreadable ones.

    A missing folder gives ([], []). Temp files of unfinished atomic writes are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [], []
    good, bad = [], []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not p.name.endswith(PART_SUFFIX) or p.name.startswith("."):
            continue
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            bad.append(p)
            continue
        (good if isinstance(obj, dict) else bad).append((p, obj) if isinstance(obj, dict) else p)
    return good, bad


def remove_files(paths: list[Path]) -> None:
    """Delete files, ignoring ones already gone."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            Path(p).unlink()


def remove_empty_dir(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if it exists and is empty (stray temp files make it stay)."""
    with contextlib.suppress(FileNotFoundError, OSError):
        Path(folder).rmdir()


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A whole UTF-8 text file; InputError naming the file when missing or not UTF-8."""
    data = read_bytes(path, what=what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
