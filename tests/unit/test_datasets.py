"""read_examples on the project's TSV and CSV formats, and on malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.datasets import read_examples
from backend.model.types import Example

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_tsv_rows_and_labels(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.tsv", 'text\tlabel\nit \'s "great" , really\t1\nawful , just awful\t0\n')
    assert read_examples(path) == [
        Example(text='it \'s "great" , really', label="POSITIVE"),  # quotes are literal in TSV
        Example(text="awful , just awful", label="NEGATIVE"),
    ]


def test_csv_rfc4180_quoting(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", 'text,label\n"Good, not great. The ""twist"" works",1\nplain bad,0\n')
    assert read_examples(path) == [
        Example(text='Good, not great. The "twist" works', label="POSITIVE"),
        Example(text="plain bad", label="NEGATIVE"),
    ]


def test_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "text,label\r\nfine film,1\r\nbad film,0")
    assert [e.label for e in read_examples(path)] == ["POSITIVE", "NEGATIVE"]


def test_project_sst2_dev_file() -> None:
    examples = read_examples(REPO / "data" / "sst2" / "dev.tsv")
    assert len(examples) == 872
    assert sum(e.label == "POSITIVE" for e in examples) == 444
    assert examples[0] == Example(text="it 's a charming and often affecting journey .", label="POSITIVE")
    assert examples[1] == Example(text="unflinchingly bleak and desperate", label="NEGATIVE")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.tsv", "", "empty file"),
        ("d.tsv", "sentence\tlabel\nx\t1\n", "header"),
        ("d.tsv", "text\tlabel\ngood\t2\n", r"d.tsv:2: label '2'"),
        ("d.tsv", "text\tlabel\ngood\t1\nno label here\n", r"d.tsv:3: expected 2 fields"),
        ("d.tsv", "text\tlabel\ngood\t1\textra\n", "found 3"),
        ("d.csv", 'text,label\n"unterminated,1\n', "malformed"),
        ("d.csv", "text,label\ngood,\n", "not 0 or 1"),
        ("d.json", "[]", "unknown data file type"),
    ],
)
def test_malformed_files_raise_value_error(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(ValueError, match=message):
        read_examples(path)
