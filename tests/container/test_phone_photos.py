"""Photos as people have them (issue 27): HEIC/HEIF (iPhone) and AVIF photos are decoded upright, whatever
their orientation, and files that are not photos are skipped unread with their reason, never decoded.
The photos are derived at test time from a faces-dev JPEG (support.phone_photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.photo_files import (
    NOT_A_PHOTO,
    PHOTO_EXTENSIONS,
    not_photo_reason,
    unknown_extension_warning,
)
from facetrain.photos import decode_photo, list_channel
from PIL import Image
from support.phone_photos import STRAY_FILES, STRAY_REASONS, phone_photo

SOURCE = ("person_02", "img12.jpg")  # 560x415: wider than high, so a missed quarter turn shows in the size


def _upright(shared_data: Path) -> np.ndarray:
    with Image.open(shared_data / "faces-dev" / SOURCE[0] / SOURCE[1]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_phone_photo_is_decoded_upright(shared_data, tmp_path, fmt, orientation) -> None:
    """Stored turned or mirrored for each EXIF orientation, tagged with it: decoded as the upright JPEG it
    was made from (same size, same pixels but for the lossy encoding)."""
    upright = _upright(shared_data)
    path = tmp_path / f"IMG_0001.{'HEIC' if fmt == 'HEIF' else 'avif'}"
    path.write_bytes(phone_photo(shared_data / "faces-dev" / SOURCE[0] / SOURCE[1], fmt, orientation))

    photo = decode_photo(path, max_pixels=50_000_000, detection_max_side=640, min_side=20)

    assert photo.size == (upright.shape[1], upright.shape[0])
    decoded = np.asarray(photo.crop_image, dtype=np.float64)
    assert decoded.shape == upright.shape
    # Lossy re-encoding differs by ~1-2 levels on average; a wrong turn or mirror by 30 and more.
    assert np.abs(decoded - upright).mean() < 4.0
    assert photo.detection_image.size == (560, 415)


def test_every_photo_extension_is_read_and_stray_files_are_not(tmp_path) -> None:
    """The one list (contract.photo_files): photo extensions in any case are read; the stray files a
    phone or an operating system leaves are not, each with its reason; an unknown extension is read (the
    job decodes by content) with a warning for validate."""
    for suffix in PHOTO_EXTENSIONS:
        for name in (f"IMG_0001{suffix}", f"IMG_0001{suffix.upper()}"):
            assert not_photo_reason(name) is None and unknown_extension_warning(name) is None, name
    for name, reason in STRAY_REASONS.items():
        assert (not_photo_reason(name) or "").startswith(reason + ": skipped; photos are read as JPEG"), name
    assert not_photo_reason("IMG_0001") is None and not_photo_reason("photo.jpg_large") is None
    assert (unknown_extension_warning("IMG_0001") or "").startswith("no extension is not a photo format's")
    assert (unknown_extension_warning("x.dng") or "").startswith("extension .dng is not a photo format's")


def test_the_job_skips_stray_files_unread_with_their_reason(shared_data, tmp_path) -> None:
    """list_channel: the stray files of a person's folder are skipped unread, apart from the photos and
    the rejections (`skipped`), reason not_a_photo and its sentence, keyed by their path in the channel
    (.DS_Store, a `.` name, is ignored as every such name); the HEIC photo is a photo."""
    person = tmp_path / "face_imgs" / "person_02"
    person.mkdir(parents=True)
    (person / "IMG_0001.HEIC").write_bytes(
        phone_photo(shared_data / "faces-dev" / SOURCE[0] / SOURCE[1], "HEIF", 6)
    )
    for name, data in STRAY_FILES.items():
        (person / name).write_bytes(data)
    (person / "._IMG_0001.HEIC").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble: a `.` name, skipped

    listing = list_channel(tmp_path / "face_imgs")

    assert [photo.key for photo in listing.photos] == ["person_02/IMG_0001.HEIC"]
    assert listing.misnamed == []
    skipped = {item.photo.key: item for item in listing.skipped}
    assert sorted(skipped) == sorted(f"person_02/{name}" for name in STRAY_FILES if name != ".DS_Store")
    for name, reason in STRAY_REASONS.items():
        if name == ".DS_Store":
            continue
        item = skipped[f"person_02/{name}"]
        assert item.reason == NOT_A_PHOTO and item.message.startswith(reason), name
