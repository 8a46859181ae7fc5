"""Phone photos in MPO form (issue 25): a JPEG whose APP2 MPF block lists more images (an Ultra HDR gain
map, a depth map). Pillow reports them as format MPO; their primary image is a JPEG and takes the JPEG
path: draft-mode (DCT-reduced) decoding, and the primary image is the one decoded. Derived at test time
from the real photos of ../shared/data."""

from __future__ import annotations

import io

import numpy as np
import pytest
from facetrain.photos import decode_full_resolution, decode_photo, decode_reduced
from PIL import Image
from support.jpeg_bombs import mpo_photo
from support.oriented_photos import EXIF_ORIENTATION

MAX_PIXELS = 89_478_485
PHOTOS = [
    "faces-small/kate_siegel/1.jpg",
    "faces-small/angelina_jolie/1.jpg",
    "faces-dev/person_02/img12.jpg",
]


def primary_of(shared_data, name: str, long_side: int) -> Image.Image:
    with Image.open(shared_data / name) as opened:
        image = opened.convert("RGB")
    factor = long_side / max(image.size)
    return image.resize(
        (round(image.width * factor), round(image.height * factor)), Image.Resampling.BILINEAR
    )


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    b = b.resize(a.size, Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


@pytest.mark.parametrize("extra_frames", [1, 2], ids=["gain-map", "gain-and-depth-maps"])
@pytest.mark.parametrize("name", PHOTOS)
def test_an_mpo_phone_photo_is_draft_decoded_from_its_primary_image(
    shared_data, tmp_path, name, extra_frames
):
    path = tmp_path / "phone.jpg"
    path.write_bytes(mpo_photo(shared_data / name, long_side=4032, extra_frames=extra_frames))
    with Image.open(path) as opened:
        assert opened.format == "MPO" and opened.n_frames == 1 + extra_frames  # the premise
        full_size = opened.size

    decoded = decode_photo(path, MAX_PIXELS, 512, 20)
    assert decoded.size == full_size
    assert decoded.crop_image.width in (-(-full_size[0] // 4), -(-full_size[0] // 8))  # DCT-reduced
    reduced = decode_reduced(decoded, MAX_PIXELS, 2.5)  # a crop's re-decode takes the JPEG path too
    assert reduced.width == -(-full_size[0] // 2)

    primary = primary_of(shared_data, name, 4032)
    gain_map = primary.resize((primary.width // 4, primary.height // 4)).convert("L").convert("RGB")
    assert mean_difference(decoded.crop_image, primary) < 3  # the primary image (JPEG noise only)
    assert mean_difference(decoded.crop_image, gain_map) > mean_difference(decoded.crop_image, primary) + 2
    assert mean_difference(decode_full_resolution(decoded, MAX_PIXELS), primary) < 3


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_mpo_photo_is_turned_upright(shared_data, tmp_path, orientation):
    """The EXIF orientation of the primary image applies to an MPO as to a JPEG."""
    upright = primary_of(shared_data, PHOTOS[0], 3000)
    stored = upright.transpose(
        {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[
            orientation
        ]
    )
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored.save(
        buffer, "MPO", save_all=True, append_images=[stored.resize((200, 200))], exif=exif, quality=90
    )
    path = tmp_path / "turned.jpg"
    path.write_bytes(buffer.getvalue())

    decoded = decode_photo(path, MAX_PIXELS, 512, 20)
    assert decoded.size == upright.size
    assert decoded.crop_image.width < upright.width // 2  # still draft-decoded
    assert mean_difference(decoded.crop_image, upright) < 3
