"""The paper's published numbers (data/paper/published.csv), for the "paper" column of every reproduced table.

One row per printed cell: `table` ("Table 3", or "Figure 3" / "Appendix A.6" for numbers given in the text), `row`
and `column` as printed, `value` as printed (no % sign; "4.94B" is stored as 4.94 with unit "billion tokens"),
`unit`, and `note` (the reading of a cell the text extraction garbled, or a cell derived because it was lost).
data/paper/README.md describes how the file was made.

The file is validated on load: required columns, a non-empty key, a finite number in `value`, and no duplicate
(table, row, column); errors name the file line (line 1 is the header).
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

DEFAULT_PATH = Path(__file__).resolve().parents[3] / "data" / "paper" / "published.csv"
REQUIRED_COLUMNS = ("table", "row", "column", "value", "unit", "note")


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The published cells as a DataFrame (columns of REQUIRED_COLUMNS, `value` float, `note` "" when empty)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise FileNotFoundError(f"published numbers not found at {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file (expected the header {','.join(REQUIRED_COLUMNS)})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}, line 1: missing columns {missing}; header is {header}")
        index = {c: header.index(c) for c in REQUIRED_COLUMNS}
        records, seen = [], {}
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                raise ValueError(f"{path}, line {line}: {len(record)} fields, the header has {len(header)}")
            cells = {c: record[i] for c, i in index.items()}
            for c in ("table", "row", "column", "unit"):
                if not cells[c].strip():
                    raise ValueError(f"{path}, line {line}: empty {c!r}")
            try:
                value = float(cells["value"])
            except ValueError:
                raise ValueError(f"{path}, line {line}: value {cells['value']!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}, line {line}: value {cells['value']!r} is not finite")
            key = (cells["table"], cells["row"], cells["column"])
            if key in seen:
                raise ValueError(f"{path}, line {line}: duplicate cell {key}, first on line {seen[key]}")
            seen[key] = line
            cells["value"] = value
            records.append(cells)
    if not records:
        raise ValueError(f"{path}: no cells")
    return pd.DataFrame.from_records(records, columns=list(REQUIRED_COLUMNS))


@lru_cache(maxsize=4)
def _lookup(path: str) -> dict[tuple[str, str, str], float]:
    frame = load_published(path)
    return {(t, r, c): v for t, r, c, v in zip(frame["table"], frame["row"], frame["column"], frame["value"])}


def published_value(table: str, row: str, column: str, path: str | Path | None = None) -> float | None:
    """The published number of one cell, or None when the paper prints none there (e.g. a "-" gap).

    The file is read and validated once per process and path.
    """
    return _lookup(str(Path(path) if path is not None else DEFAULT_PATH)).get((table, row, column))
