"""facetrain.photos: listing the channel, decoding by content, modes to RGB, refusals (no torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from facetrain.photos import PhotoRejected, decode_full_resolution, decode_photo, list_channel, to_rgb
from facetrain.sagemaker_env import ContractError
from PIL import Image, ImageFile
from support.unlistable import listing_refused

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


@pytest.mark.parametrize("relative_link", [True, False])
def test_list_channel_follows_links_to_folders_and_not_cycles(tmp_path, relative_link):
    """What `facetrain run` uploads (photo_upload follows links): a linked sub-folder's photos are listed
    (Path.rglob on Python 3.11 skipped them); a link back into the folder it is in is not followed."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "trip").mkdir(parents=True)
    (elsewhere / "trip" / "5.jpg").write_bytes(b"x")
    (elsewhere / "carol").mkdir()
    (elsewhere / "carol" / "1.jpg").write_bytes(b"x")
    channel = tmp_path / "channel"
    (channel / "alice").mkdir(parents=True)
    (channel / "alice" / "1.jpg").write_bytes(b"x")

    def link(at: Path, to: Path) -> None:
        at.symlink_to(Path("..", "..", *to.relative_to(tmp_path).parts) if relative_link else to)

    link(channel / "alice" / "holiday", elsewhere / "trip")  # a sub-folder that is a link
    link(channel / "alice" / "loop", channel / "alice")  # a cycle
    (channel / "carol").symlink_to(elsewhere / "carol")  # a person's folder that is a link
    listing = list_channel(channel)
    assert [p.key for p in listing.photos] == ["alice/1.jpg", "alice/holiday/5.jpg", "carol/1.jpg"]


# name → make(channel): links that lead back into a folder above them; never followed (what they lead to is
# listed already), as the upload does not follow them (issue 25: a link to the channel in a person's folder
# listed every person's photos again as that person's)
CHANNEL_CYCLES = {
    "to the channel, relative": lambda channel: (channel / "alice" / "all").symlink_to(".."),
    "to the channel, absolute": lambda channel: (channel / "alice" / "all").symlink_to(channel),
    "a person's folder that is the channel": lambda channel: (channel / "cy").symlink_to("."),
    "to a folder above a sub-folder": lambda channel: (channel / "alice" / "sub" / "up").symlink_to("../.."),
}


@pytest.mark.parametrize("variant", CHANNEL_CYCLES)
def test_list_channel_never_follows_a_link_back_into_the_channel(tmp_path, variant):
    for relative in ["alice/1.jpg", "alice/sub/2.jpg", "bob/1.jpg"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    CHANNEL_CYCLES[variant](tmp_path)
    listing = list_channel(tmp_path)
    assert [p.key for p in listing.photos] == ["alice/1.jpg", "alice/sub/2.jpg", "bob/1.jpg"]
    assert listing.stray_files == [] and listing.misnamed == []


# name → make(path) puts at `path` an entry that cannot be examined (issue 25: a link to itself raised
# OSError out of the listing, "a facetrain bug"); it is listed, and read_photo_bytes rejects it
NOT_EXAMINED = {
    "a link to itself": lambda path: path.symlink_to(path.name),
    "two links to each other": lambda path: (
        path.symlink_to(f"{path.name}-b"),
        path.with_name(f"{path.name}-b").symlink_to(path.name),
    ),
    "a broken link": lambda path: path.symlink_to("nowhere.jpg"),
}


@pytest.mark.parametrize("variant", NOT_EXAMINED)
@pytest.mark.parametrize("where", ["alice/x.jpg", "alice/sub/x.jpg", "_strangers/x.jpg"])
def test_list_channel_lists_what_cannot_be_examined_for_its_rejection(tmp_path, variant, where):
    (tmp_path / "alice" / "sub").mkdir(parents=True)
    (tmp_path / "_strangers").mkdir()
    (tmp_path / "alice" / "1.jpg").write_bytes(b"x")
    NOT_EXAMINED[variant](tmp_path / where)
    listing = list_channel(tmp_path)
    keys = [p.key for p in (*listing.photos, *listing.strangers)]
    assert "alice/1.jpg" in keys and where in keys
    reason, message = rejection(tmp_path / where)
    assert reason == "unreadable" and "cannot be read" in message


# (folder made unlistable, its identity, the key of its rejection)
UNLISTABLE = [
    ("alice", "alice", "alice/"),
    ("alice/sub", "alice", "alice/sub/"),
    ("_strangers/night", "_strangers", "_strangers/night/"),
    ("elsewhere", "carol", "carol/"),  # a person's folder that is a link to it
]


@pytest.mark.parametrize(("folder", "identity", "key"), UNLISTABLE)
def test_a_folder_that_cannot_be_listed_is_rejected_unread(tmp_path, folder, identity, key):
    """Not "a facetrain bug" (os.scandir's PermissionError ended the job): one `unreadable` row for the
    folder, and every other photo listed."""
    channel = tmp_path / "channel"
    for relative in ["alice/sub/2.jpg", "bob/1.jpg", "_strangers/night/3.jpg"]:
        (channel / relative).parent.mkdir(parents=True, exist_ok=True)
        (channel / relative).write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "4.jpg").write_bytes(b"x")
    (channel / "carol").symlink_to(tmp_path / "elsewhere")

    with listing_refused(channel / folder if folder != "elsewhere" else tmp_path / folder):
        listing = list_channel(channel)

    ((ref, rejected),) = listing.misnamed
    assert (ref.identity, ref.key, rejected.reason) == (identity, key, "unreadable")
    assert "cannot be listed (Permission denied)" in rejected.message and "readable" in rejected.message
    listed = {p.key for p in (*listing.photos, *listing.strangers)}
    assert "bob/1.jpg" in listed and not [k for k in listed if k.startswith(key)]


def test_a_channel_that_cannot_be_listed_is_a_contract_error(tmp_path):
    (tmp_path / "alice").mkdir()
    with listing_refused(tmp_path), pytest.raises(ContractError, match="cannot be listed"):
        list_channel(tmp_path)
    with pytest.raises(ContractError, match=r"cannot be listed \(No such file or directory\)"):
        list_channel(tmp_path / "gone")


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
    assert "upload a JPEG, PNG, HEIC/HEIF, AVIF, WebP, TIFF, BMP or GIF photo" in message


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


# ---- EXIF orientation 1-8 in TIFF and JPEG: one upright size for the detection copy, crop and box ------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("TIFF", {"compression": "jpeg"}),
        ("JPEG", {}),
    ],
    ids=["tiff-raw", "tiff-deflate", "tiff-jpeg", "jpeg"],
)
def test_every_exif_orientation_gives_the_upright_size_and_scales(
    shared_data, tmp_path, fmt, options, orientation
):
    """Pillow's TIFF plugin reports the upright size and turns the pixels itself on load; the size the
    face box is scaled by must be the upright one whichever does it (issue 25: orientations 5-8 in a TIFF
    swapped W and H, so the box was scaled by W/H)."""
    from support.oriented_photos import exif_oriented

    upright = load_rgb(shared_data / "faces-small" / "kate_siegel" / "1.jpg")  # 1125 x 1612: not square
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    path.write_bytes(exif_oriented(upright, orientation, fmt, **options))
    decoded = decode(path)
    assert decoded.size == upright.size
    for image, scale in (
        (decoded.detection_image, decoded.detection_scale),
        (decoded.crop_image, decoded.crop_scale),
    ):
        assert image.width / image.height == pytest.approx(upright.width / upright.height, rel=0.01)
        assert decoded.size[1] / image.height == pytest.approx(scale, rel=0.01)  # one scale for x and y
    full = np.asarray(decode_full_resolution(decoded, MAX_PIXELS), dtype=np.int16)
    assert full.shape == (upright.height, upright.width, 3)
    assert np.abs(full - np.asarray(upright, dtype=np.int16)).mean() < 4  # the same picture, upright


def load_rgb(path):
    with Image.open(path) as image:
        return image.convert("RGB")
