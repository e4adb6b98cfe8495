"""The table of a grid's cells (``OUT/cells.csv``) and what ``genloop check`` finds at grid level.

``cells.csv`` lists every cell ever run in a grid folder: ``cell`` (the folder's name),
``label``, ``in_grid`` and one column per swept key. It is the only source of a grid's cells:
a folder it does not list (a renamed or copied cell) is reported, never read into results.
A table that is not UTF-8 CSV with those columns, or that names a folder outside the grid, is
a :class:`~genloop.errors.DataError` naming the file.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from genloop.errors import DataError, GenloopError

__all__ = ["CELLS_TABLE", "read_cells_table", "listed_cells", "grid_problems"]

CELLS_TABLE = "cells.csv"
_COLUMNS = ("cell", "label", "in_grid")
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+,-]*$")  # what genloop.sweep.grid names a cell


def _damaged(path: Path, why: str) -> DataError:
    return DataError(f"{path} is damaged ({why}); it lists the grid's cells: restore it from a copy, "
                     "or rerun the grid into a new --out")


def read_cells_table(out: str | Path) -> list[dict[str, str]]:
    """The rows of ``cells.csv`` (empty when there is none); a damaged table is a DataError."""
    path = Path(out) / CELLS_TABLE
    if not path.exists():
        return []
    if not path.is_file():
        raise _damaged(path, "not a regular file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text, byte {exc.start}") from None
    if "\x00" in text:
        raise _damaged(path, "binary data")
    if text and not text.endswith("\n"):
        raise _damaged(path, "its last line is cut off")
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        rows = list(reader)
    except csv.Error as exc:
        raise _damaged(path, f"not CSV: {exc}") from None
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise _damaged(path, f"columns {', '.join(missing)} are missing")
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise _damaged(path, f"line {i} has {'more' if None in row else 'fewer'} fields than the header")
        if not _FOLDER.match(row["cell"]) or ".." in row["cell"]:
            raise _damaged(path, f"line {i} names {row['cell']!r}, which is not a cell folder name")
    return rows


def listed_cells(folder: str | Path) -> list[str]:
    """The cell folder names ``cells.csv`` lists, in its order."""
    return [row["cell"] for row in read_cells_table(folder)]


def grid_problems(folder: str | Path) -> list[str]:
    """What is wrong at the grid level of ``folder`` (empty outside grids); changes nothing.

    ``cells.csv`` readable, the grid's ``config.yaml`` valid (validated without importing
    anything it names), every listed cell folder present and a real folder (not a link), and
    no cell-like folder that the table does not list.
    """
    from genloop.store.links import is_link, link_text

    folder = Path(folder)
    if not (folder / CELLS_TABLE).exists():
        return []
    problems: list[str] = []
    try:
        names = listed_cells(folder)
    except GenloopError as exc:
        return [str(exc)]
    problems += _grid_config_problems(folder)
    for name in names:
        cell = folder / name
        if is_link(cell):
            problems.append(f"{link_text(cell, folder)}: a grid cell is a symbolic link (resume refuses it)")
        elif not cell.is_dir():
            problems.append(f"{name}/: listed in {CELLS_TABLE} but missing")
    listed = set(names)
    for entry in sorted(folder.iterdir()):
        if entry.name in listed or not (entry.is_dir() or is_link(entry)):
            continue
        if any(entry.glob("lam=*")) or (entry / "config.yaml").exists():
            problems.append(f"{entry.name}/: a cell folder not listed in {CELLS_TABLE} (renamed or copied?); "
                            "its runs are not part of the results")
    return problems


def _grid_config_problems(folder: Path) -> list[str]:
    from genloop.config import read_yaml
    from genloop.sweep.grid import expand_grid

    path = folder / "config.yaml"
    if not path.exists():
        return ["config.yaml (the grid's config) is missing"]
    try:
        doc = read_yaml(path, what="grid config")
        if not isinstance(doc, dict):
            raise DataError(f"grid config {path} is not a mapping")
        from genloop.config import parse_config

        for cell in expand_grid(doc):
            parse_config(cell.doc)
    except GenloopError as exc:
        return [f"config.yaml: {exc}"]
    return []
