"""Reading the project's labelled data files (SST-2 TSV, IMDB CSV) into Examples."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from backend.model.types import Example

LABELS = {"0": "NEGATIVE", "1": "POSITIVE"}


class _Tsv(csv.Dialect):
    """SST-2's TSV: tab separated, no quoting at all (text never holds a tab or newline)."""

    delimiter = "\t"
    quoting = csv.QUOTE_NONE
    quotechar = None
    lineterminator = "\n"
    skipinitialspace = False
    strict = True


class _Csv(csv.excel):
    """RFC 4180 CSV, refusing malformed quoting instead of guessing."""

    strict = True


_DIALECTS: dict[str, type[csv.Dialect]] = {".tsv": _Tsv, ".csv": _Csv}


def read_examples(path: Path | str) -> list[Example]:
    """Every row of a `text,label` CSV (RFC 4180) or `text<TAB>label` TSV file; label 0/1 → NEGATIVE/POSITIVE."""
    path = Path(path)
    dialect = _DIALECTS.get(path.suffix.lower())
    if dialect is None:
        raise ValueError(f"{path}: unknown data file type {path.suffix!r}; expected .tsv or .csv")
    with path.open(encoding="utf-8", newline="") as fh:
        return _parse(path, csv.reader(fh, dialect))


def _parse(path: Path, rows: Iterable[list[str]]) -> list[Example]:
    """Examples from parsed rows, after checking the header; every bad row is a ValueError naming its line."""
    it = iter(rows)
    try:
        header = next(it)
    except StopIteration:
        raise ValueError(f"{path}: empty file; expected a header row `text` and `label`") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed header ({exc})") from None
    if [h.strip() for h in header] != ["text", "label"]:
        raise ValueError(f"{path}: header is {header!r}; expected ['text', 'label']")
    examples: list[Example] = []
    try:
        for line, row in enumerate(it, start=2):
            examples.append(_example(path, line, row))
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV after line {len(examples) + 1} ({exc})") from None
    return examples


def _example(path: Path, line: int, row: list[str]) -> Example:
    if len(row) != 2:
        raise ValueError(f"{path}:{line}: expected 2 fields (text, label), found {len(row)}")
    label = LABELS.get(row[1].strip())
    if label is None:
        raise ValueError(f"{path}:{line}: label {row[1]!r} is not 0 or 1")
    return Example(text=row[0], label=label)
