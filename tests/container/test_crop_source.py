"""faces.crop_source: the crop of a large photo is taken from a DCT-reduced re-decode, not full resolution,
with the face still at least the needed size and the embedding as from the full-resolution crop."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

MAX_PIXELS = 89_478_485


@pytest.fixture(scope="module")
def encoder():
    from facetrain.contract.hyperparameters import Hyperparameters
    from facetrain.inference.runtimes import open_encoder, resolve_models

    settings = Hyperparameters(weights="none", runtime="torch")
    return open_encoder(settings, resolve_models(settings, None), "cpu")


def phone_size(shared_data, tmp_path, long_side: int):
    """kate_siegel's photo (1125 x 1612) upscaled to a phone photo's size, derived at test time."""
    with Image.open(shared_data / "faces-small" / "kate_siegel" / "1.jpg") as opened:
        image = opened.convert("RGB")
    factor = long_side / max(image.size)
    path = tmp_path / f"kate-{long_side}.jpg"
    image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS).save(
        path, quality=90
    )
    return path


def test_a_phone_size_photo_is_cropped_from_a_reduced_decode(shared_data, tmp_path, encoder):
    from facenet_pytorch.models.mtcnn import fixed_image_standardization
    from facenet_pytorch.models.utils.detect_face import extract_face
    from facetrain.inference.faces import crop_source
    from facetrain.photos import decode_full_resolution, decode_photo

    photo = decode_photo(phone_size(shared_data, tmp_path, 4400), MAX_PIXELS, 512, 20)
    face = encoder.detect(photo)
    face_side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
    assert face_side / photo.crop_scale < 160  # too small in the detection-size decode: re-decoded

    source, scale = crop_source(photo, face, 160, MAX_PIXELS)
    assert source.width < photo.size[0]
    assert scale > 1.9  # a DCT-reduced decode (1/2 or less), not the 3070 x 4400 pixels
    assert face_side / scale >= 160  # the face still has the crop's resolution

    full = decode_full_resolution(photo, MAX_PIXELS)
    from_full = fixed_image_standardization(extract_face(full, np.array(face.box), 160, 0))
    reduced, reference = encoder.embed([encoder.crop(photo, face), from_full])
    # measured: at most 0.0012 over 28 phone-size copies of ../shared/data (unit vectors, weights=none)
    assert np.linalg.norm(reduced - reference) < 0.005


def test_a_face_under_twice_the_needed_side_is_cropped_at_full_resolution(shared_data, tmp_path, encoder):
    from facetrain.inference.faces import crop_source
    from facetrain.photos import decode_photo

    photo = decode_photo(phone_size(shared_data, tmp_path, 1400), MAX_PIXELS, 512, 20)
    face = encoder.detect(photo)
    face_side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
    _, scale = crop_source(photo, face, round(face_side * 0.6), MAX_PIXELS)
    assert scale == 1.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_face_box_and_crop_are_in_the_upright_photo(shared_data, tmp_path, encoder, orientation):
    """A TIFF stored turned, with the EXIF orientation that undoes it: the face box lands on the face of
    the upright photo (the same box as the photo saved upright as PNG) and the crop is the same face
    (issue 25: orientations 5-8 scaled the box by W/H)."""
    from facetrain.photos import decode_photo
    from support.oriented_photos import exif_oriented

    with Image.open(shared_data / "faces-small" / "kate_siegel" / "1.jpg") as opened:
        upright = opened.convert("RGB")  # 1125 x 1612: a box scaled by W/H lands 43 % off
    png, tiff = tmp_path / "upright.png", tmp_path / f"o{orientation}.tif"
    upright.save(png)
    tiff.write_bytes(exif_oriented(upright, orientation, "TIFF", compression="tiff_deflate"))

    reference = decode_photo(png, MAX_PIXELS, 512, 20)
    turned = decode_photo(tiff, MAX_PIXELS, 512, 20)
    expected, found = encoder.detect(reference), encoder.detect(turned)
    assert found.box == pytest.approx(expected.box, abs=1.0)  # full-resolution pixels of the upright photo
    crops = [encoder.crop(reference, expected), encoder.crop(turned, found)]
    assert float((crops[0] - crops[1]).abs().mean()) < 0.01
