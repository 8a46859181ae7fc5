"""facetrain.photos: listing the channel, decoding by content, modes to RGB, refusals (no torch)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from facetrain.photos import PhotoRejected, decode_full_resolution, decode_photo, list_channel, to_rgb
from PIL import Image, ImageFile

MAX_PIXELS = 89_478_485


def decode(path, max_pixels=MAX_PIXELS, detection_max_side=512, min_side=20):
    return decode_photo(path, max_pixels=max_pixels, detection_max_side=detection_max_side, min_side=min_side)


def rejection(path, **options) -> tuple[str, str]:
    with pytest.raises(PhotoRejected) as error:
        decode(path, **options)
    return error.value.rejection.reason, error.value.rejection.message


# ---- to_rgb -------------------------------------------------------------------------------------------


def test_rgb_is_returned_as_is():
    image = Image.new("RGB", (4, 4), (1, 2, 3))
    assert to_rgb(image) is image


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("YCbCr", (255, 128, 128), (255, 255, 255)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 257 * 100, (100, 100, 100)),
        ("I;16B", 257 * 30, (30, 30, 30)),
        ("I", 200, (200, 200, 200)),  # ≤ 255: 8-bit values stored as I
        ("I", 65535, (255, 255, 255)),  # > 255: 16-bit range
        ("F", 128.0, (128, 128, 128)),
    ],
)
def test_modes_become_rgb(mode, value, expected):
    image = Image.new(mode, (6, 5), value)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert rgb.size == (6, 5)
    assert rgb.getpixel((3, 2)) == expected


def test_sixteen_bit_gradient_keeps_its_levels():
    values = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    rgb = np.asarray(to_rgb(Image.fromarray(values)))
    assert np.array_equal(rgb[..., 0], np.arange(256, dtype=np.uint8).reshape(16, 16))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_transparent_areas_become_white(mode):
    image = Image.new("RGBA", (4, 2), (10, 20, 30, 255))
    image.putpixel((0, 0), (10, 20, 30, 0))
    image.putpixel((1, 0), (0, 0, 0, 128))
    converted = image if mode == "RGBA" else image.convert(mode)
    rgb = to_rgb(converted)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 0)) in ((127, 127, 127), (128, 128, 128))
    opaque = rgb.getpixel((3, 1))
    assert opaque == ((10, 20, 30) if mode == "RGBA" else opaque)
    assert opaque != (255, 255, 255)


def test_palette_with_transparency_becomes_white():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    rgb = to_rgb(image)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 0)) == (0, 0, 255)
    del image.info["transparency"]
    assert to_rgb(image).getpixel((0, 0)) == (255, 0, 0)


# ---- list_channel -------------------------------------------------------------------------------------


def test_list_channel_order_skips_and_strays(tmp_path):
    for relative in [
        "bob/2.jpg",
        "bob/1.jpg",
        "alice/sub/3.jpg",
        "alice/1.jpg",
        "alice/.DS_Store",
        "alice/_draft.jpg",
        "alice/.hidden/4.jpg",
        "_archive/9.jpg",
        ".git/x.jpg",
        "top.jpg",
        ".top.jpg",
        "_top.jpg",
    ]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    listing = list_channel(tmp_path)
    assert [(p.identity, p.key) for p in listing.photos] == [
        ("alice", "alice/1.jpg"),
        ("alice", "alice/sub/3.jpg"),
        ("bob", "bob/1.jpg"),
        ("bob", "bob/2.jpg"),
    ]
    assert listing.photos[0].path == tmp_path / "alice" / "1.jpg"
    assert listing.stray_files == ["top.jpg"]


# ---- decode_photo ---------------------------------------------------------------------------------------


def test_pillow_is_strict_about_truncation():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decodes_with_a_small_detection_copy(shared_data, tmp_path):
    path = shared_data / "faces-small" / "angelina_jolie" / "1.jpg"
    decoded = decode(path, detection_max_side=512)
    assert decoded.size == (1665, 2048)
    assert max(decoded.detection_image.size) <= 512
    assert decoded.detection_image.mode == "RGB"
    assert decoded.crop_image.width < 1665  # JPEG draft mode: not decoded at full size
    assert decoded.detection_scale == pytest.approx(1665 / decoded.detection_image.width)
    full = decode_full_resolution(decoded, MAX_PIXELS)
    assert full.size == (1665, 2048)
    assert decoded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_truncated_jpeg_is_unreadable(shared_data, tmp_path, forge):
    data = (shared_data / "faces-small" / "kate_siegel" / "1.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(forge.truncated(data))
    reason, message = rejection(path)
    assert reason == "unreadable"
    assert "truncated or corrupt" in message


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes, not a photo\n", encoding="utf-8")
    reason, message = rejection(path)
    assert reason == "not_an_image"
    assert "JPEG, PNG or WebP" in message


def test_empty_file_is_not_an_image(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert rejection(path)[0] == "not_an_image"


def test_missing_file_is_unreadable(tmp_path):
    assert rejection(tmp_path / "gone.jpg")[0] == "unreadable"


def test_tiny_photo_is_too_small(shared_data, tmp_path, forge):
    image = forge.load_rgb(shared_data / "faces-small" / "kate_siegel" / "1.jpg").resize((10, 10))
    path = tmp_path / "tiny.jpg"
    path.write_bytes(forge.encode(image, "JPEG"))
    reason, message = rejection(path, min_side=20)
    assert reason == "too_small"
    assert "10x10 px" in message


def test_huge_declared_size_is_refused_before_decoding(tmp_path, forge, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(forge.png_with_declared_size(100_000, 100_000))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(path) as image:
        assert image.size == (100_000, 100_000)  # the header really declares it

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    reason, message = rejection(path)
    assert reason == "too_large"
    assert f"max_image_pixels={MAX_PIXELS}" in message


@pytest.mark.parametrize("factor", [1.5, 3.0])  # Pillow warns above the limit and errors above twice it
def test_max_image_pixels_setting_is_applied(shared_data, factor):
    path = shared_data / "faces-small" / "kate_siegel" / "1.jpg"  # 1125 x 1612
    limit = int(1125 * 1612 / factor)
    reason, message = rejection(path, max_pixels=limit)
    assert reason == "too_large"
    assert str(limit) in message
    assert decode(path, max_pixels=1125 * 1612).size == (1125, 1612)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(shared_data, tmp_path, forge, orientation):
    upright = forge.load_rgb(shared_data / "faces-small" / "kate_siegel" / "1.jpg")
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(forge.exif_rotated_jpeg(upright, orientation))
    with Image.open(path) as stored:
        assert stored.size == (upright.size if orientation == 3 else upright.size[::-1])
    decoded = decode(path)
    assert decoded.size == upright.size
    full = np.asarray(decode_full_resolution(decoded, MAX_PIXELS), dtype=np.int16)
    reference = np.asarray(upright, dtype=np.int16)
    assert full.shape == reference.shape
    assert np.abs(full - reference).mean() < 4  # same picture, upright (JPEG noise only)


def test_webp_named_jpg_is_decoded_by_content(shared_data, tmp_path, forge):
    upright = forge.load_rgb(shared_data / "faces-small" / "kate_siegel" / "1.jpg")
    path = tmp_path / "really_webp.jpg"
    path.write_bytes(forge.encode(upright, "WEBP", quality=90))
    assert decode(path).size == upright.size
