"""Decode-time bombs (issue 25): a JPEG's scans are counted before it is decoded, each decode has a time
budget, and a photo file is read only up to the byte cap. Every bomb is derived at test time from the real
photos of ../shared/data (tests/support/jpeg_bombs.py)."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.photo_limits import MAX_PHOTO_BYTES
from facetrain.jpeg_scans import MAX_JPEG_SCANS, count_scans
from facetrain.photos import PhotoRejected, configure_pillow, decode_photo, read_photo_bytes
from PIL import Image, ImageFile
from support.jpeg_bombs import (
    PAYLOAD,
    first_scan_offset,
    naive_scan_count,
    progressive_jpeg,
    repeat_last_scan,
    repeat_smallest_scan,
    segment,
    segment_between_scans,
    split_progressive,
    stray_after_tables_between_scans,
    stray_before_every_scan,
    stray_before_first_scan,
    tables_length_off,
    with_segment_before_scans,
)

MAX_PIXELS = 89_478_485
KATE = "faces-small/kate_siegel/1.jpg"
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def pillow_guard():
    configure_pillow(MAX_PIXELS)  # as the pipeline does: 8000 x 8000 is within max_image_pixels


@pytest.fixture(scope="module")
def kate_progressive(shared_data) -> bytes:
    return progressive_jpeg(shared_data / KATE)


@pytest.fixture(scope="module")
def smooth_8000(shared_data) -> bytes:
    """An 8000 x 8000 progressive JPEG of a blurred face (as the hostile user's 460 KB one): its
    refinement scans are tiny, and each still walks all of its 64 megapixels."""
    with Image.open(shared_data / KATE) as opened:
        image = opened.convert("RGB").resize((400, 400)).resize((8000, 8000), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75, progressive=True)
    return buffer.getvalue()


def decode_bytes(tmp_path: Path, data: bytes, name: str = "photo.jpg", budget: float = 10.0):
    path = tmp_path / name
    path.write_bytes(data)
    return decode_photo(path, MAX_PIXELS, 512, 20, budget_seconds=budget)


def rejected(tmp_path: Path, data: bytes, budget: float = 10.0) -> tuple[PhotoRejected, float]:
    started = time.perf_counter()
    with pytest.raises(PhotoRejected) as error:
        decode_bytes(tmp_path, data, budget=budget)
    return error.value, time.perf_counter() - started


# ---- counting scans ----------------------------------------------------------------------------------


def test_the_real_photos_have_far_fewer_scans_than_the_cap(shared_data):
    counts = {
        path.relative_to(shared_data).as_posix(): count_scans(path.read_bytes())
        for path in sorted(shared_data.rglob("*.jpg"))
    }
    print(f"scans per photo in ../shared/data: {counts}")  # measured: 1 (baseline) to 11 (progressive)
    assert len(counts) >= 28
    assert min(counts.values()) >= 1
    assert max(counts.values()) <= MAX_JPEG_SCANS // 4


def test_pillows_own_output_counts_as_its_scans(shared_data, kate_progressive):
    with Image.open(shared_data / KATE) as opened:
        image = opened.convert("RGB")
    baseline = io.BytesIO()
    image.save(baseline, "JPEG", quality=90)
    assert count_scans(baseline.getvalue()) == 1 == naive_scan_count(baseline.getvalue())
    assert count_scans(kate_progressive) == 10 == naive_scan_count(kate_progressive)  # libjpeg's script
    for progressive in (False, True):  # restart markers (0xFFD0-D7) inside the entropy-coded data
        with_restarts = io.BytesIO()
        image.save(with_restarts, "JPEG", quality=90, progressive=progressive, restart_marker_rows=1)
        data = with_restarts.getvalue()
        assert any(bytes([0xFF, 0xD0 + n]) in data for n in range(8))
        assert count_scans(data) == (10 if progressive else 1)


@pytest.mark.parametrize("marker", [0xFE, 0xE1, 0xEF], ids=["COM", "APP1", "APP15"])
def test_scan_markers_inside_other_segments_are_not_scans(tmp_path, kate_progressive, marker):
    """A comment or an APPn block (an EXIF thumbnail is a whole JPEG) may hold 0xFFDA bytes: not scans. A
    byte search would refuse this real photo."""
    payload = b"\xff\xda" * 100 + kate_progressive[:60_000]
    data = with_segment_before_scans(kate_progressive, marker, payload)
    assert naive_scan_count(data) > MAX_JPEG_SCANS
    assert count_scans(data) == 10
    assert decode_bytes(tmp_path, data).size == (1125, 1612)


def test_fill_bytes_before_markers_are_skipped(kate_progressive):
    parts = split_progressive(kate_progressive)
    filled = parts.join([b"\xff\xff\xff" + scan for scan in parts.scans])  # 0xFF fill before each SOS
    assert count_scans(filled) == 10


def test_only_the_first_image_of_the_file_is_counted(kate_progressive):
    """Bytes after the first image's EOI (an MPO's other images) are not decoded, so not counted."""
    assert count_scans(kate_progressive + repeat_last_scan(kate_progressive, 100)) == 10


def test_counting_stops_past_the_limit(kate_progressive):
    assert (
        count_scans(repeat_last_scan(kate_progressive, 500), stop_after=MAX_JPEG_SCANS) == MAX_JPEG_SCANS + 1
    )


def test_counting_never_raises_on_truncated_or_foreign_bytes(kate_progressive):
    """Truncated anywhere, a JPEG counts the scans before the cut (libjpeg decodes those, then stops)."""
    for cut in range(0, len(kate_progressive), 997):
        assert 0 <= count_scans(kate_progressive[:cut]) <= 10
    assert count_scans(b"\x89PNG\r\n\x1a\n") == count_scans(b"") == count_scans(b"\xff") == 0


# ---- too many scans: refused before decoding -----------------------------------------------------------


BOMBS = {
    "last scan repeated 60 times": lambda kate, big: repeat_last_scan(kate, 60),
    "last scan repeated 300 times": lambda kate, big: repeat_last_scan(kate, 300),
    "3000 tiny scans": lambda kate, big: repeat_smallest_scan(kate, 3000),
    "8000x8000 with 3000 tiny scans": lambda kate, big: repeat_smallest_scan(big, 3000),
    "8000x8000 with its last scan repeated 60 times": lambda kate, big: repeat_last_scan(big, 60),
}


@pytest.mark.parametrize("variant", BOMBS)
def test_a_jpeg_with_more_scans_than_a_photo_has_is_refused_before_decoding(
    tmp_path, kate_progressive, smooth_8000, monkeypatch, variant
):
    data = BOMBS[variant](kate_progressive, smooth_8000)
    assert len(data) <= MAX_PHOTO_BYTES and count_scans(data) > MAX_JPEG_SCANS

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    error, seconds = rejected(tmp_path, data)
    assert error.rejection.reason == "too_many_scans"
    assert f"more than {MAX_JPEG_SCANS} scans" in error.rejection.message
    assert "decode-time bomb; re-export it as a" in error.rejection.message
    assert seconds < 2.0  # measured: 0.01-0.02 s (the 8000x8000 one decodes in hours without the cap)


# ---- bombs that libjpeg decodes with a warning: stray bytes, wrong segment lengths -------------------------


def bomb(data: bytes) -> bytes:
    """410 scans: the smallest one repeated (the last scan of the 8000x8000 photo is too big to repeat
    400 times under MAX_PHOTO_BYTES)."""
    return repeat_smallest_scan(data, 400)


# Each one a bomb that libjpeg decodes in full (test_libjpeg_decodes_every_variant_in_full): the count must
# follow libjpeg past the stray bytes and through the wrong lengths, or all 410 scans get decoded.
TOLERATED = {
    "1 stray byte before the first scan": lambda d: stray_before_first_scan(bomb(d), b"\x00"),
    "7 stray bytes before the first scan": lambda d: stray_before_first_scan(bomb(d), b"garbage"),
    "1000 stray bytes before the first scan": lambda d: stray_before_first_scan(
        bomb(d), bytes(range(200)) * 5
    ),
    "stray FF00 before the first scan": lambda d: stray_before_first_scan(bomb(d), b"\xff\x00\x00"),
    "stray bytes after the tables between scans": lambda d: stray_after_tables_between_scans(
        bomb(d), b"\x00"
    ),
    "7 stray bytes before every scan": lambda d: stray_before_every_scan(bomb(d), b"\x01\x02\x03\x00abc"),
    "stray bytes and fill bytes before every scan": lambda d: stray_before_every_scan(
        bomb(d), b"\x00\xff\xff"
    ),
    "COM of length 0 before every scan": lambda d: segment_between_scans(bomb(d), segment(0xFE, 0)),
    "APP0 of length 1 before every scan": lambda d: segment_between_scans(bomb(d), segment(0xE0, 1)),
    "COM shorter than its text": lambda d: segment_between_scans(bomb(d), segment(0xFE, 2 + 5)),
    "APP1 longer than its text, into stray bytes": lambda d: segment_between_scans(
        bomb(d), segment(0xE1, 2 + len(PAYLOAD) + 3, PAYLOAD + bytes(10))
    ),
}


@pytest.fixture(scope="module")
def small_progressive(shared_data) -> bytes:
    """A real photo, small enough that libjpeg decodes 410 of its scans in a fraction of a second."""
    return progressive_jpeg(shared_data / KATE, long_side=240)


@pytest.mark.parametrize("variant", TOLERATED)
def test_libjpeg_decodes_every_variant_in_full(small_progressive, variant):
    """The variants are bombs, not broken files: Pillow's libjpeg reads each to its EOI without an
    error, so it decodes every one of its scans."""
    data = TOLERATED[variant](small_progressive)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.size == Image.open(io.BytesIO(small_progressive)).size


@pytest.mark.parametrize("variant", TOLERATED)
def test_stray_bytes_and_wrong_lengths_do_not_hide_scans(
    tmp_path, small_progressive, kate_progressive, smooth_8000, monkeypatch, variant
):
    """A hostile user's stray 0x00 before the first scan made a 410-scan bomb count 0 and decode in full."""
    variants = [TOLERATED[variant](base) for base in (small_progressive, kate_progressive, smooth_8000)]
    assert all(count_scans(data) == 410 for data in variants)

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for data in variants:
        error, seconds = rejected(tmp_path, data)
        assert error.rejection.reason == "too_many_scans"
        assert seconds < 2.0


@pytest.mark.parametrize("delta", [1, -1, 200])
def test_a_table_whose_length_is_wrong_stops_libjpeg_early(tmp_path, smooth_8000, delta):
    """A DHT length that disagrees with its tables is fatal to libjpeg, which decodes nothing after it.
    Counted by the length as libjpeg reads it: too short (-1), the 410 scans are counted (too_many_scans);
    too long (+1, +200), it swallows the next SOS marker and the count is low, so the decode starts and
    stops at the first bad table (unreadable), never going through the 410 scans."""
    data = tables_length_off(bomb(smooth_8000), delta)
    error, seconds = rejected(tmp_path, data)
    assert error.rejection.reason in {"unreadable", "too_many_scans"}
    assert seconds < 2.0  # all 410 scans of the 8000x8000 one: minutes


@pytest.mark.parametrize("stray", [b"\x00", b"garbage", b"\xff\x00"])
def test_a_real_photo_with_stray_bytes_under_the_cap_still_decodes(
    tmp_path, shared_data, kate_progressive, stray
):
    """libjpeg decodes these with a warning, so they are photos, not bombs: counted right, decoded."""
    plain = decode_bytes(tmp_path, kate_progressive, "plain.jpg")
    for data in (
        stray_before_first_scan(kate_progressive, stray),
        stray_before_every_scan(kate_progressive, stray),
    ):
        assert count_scans(data) == 10
        decoded = decode_bytes(tmp_path, data)
        assert np.array_equal(np.asarray(decoded.crop_image), np.asarray(plain.crop_image))
    camera = (shared_data / "faces-dev/person_04/img13.jpg").read_bytes()  # as the camera wrote it
    first_scan = first_scan_offset(camera)
    assert first_scan > camera.index(b"\xff\xda")  # the thumbnail's scan comes first
    with_stray = camera[:first_scan] + stray + camera[first_scan:]
    assert count_scans(with_stray) == count_scans(camera)
    assert decode_bytes(tmp_path, with_stray, "camera.jpg").size == decode_bytes(tmp_path, camera).size


def test_a_progressive_jpeg_just_under_the_cap_still_decodes(tmp_path, kate_progressive):
    data = repeat_last_scan(kate_progressive, MAX_JPEG_SCANS - 10)
    assert count_scans(data) == MAX_JPEG_SCANS
    decoded = decode_bytes(tmp_path, data)
    plain = decode_bytes(tmp_path, kate_progressive, "plain.jpg")
    assert decoded.size == plain.size == (1125, 1612)
    difference = np.abs(np.asarray(decoded.crop_image, np.int16) - np.asarray(plain.crop_image, np.int16))
    assert difference.mean() < 4  # a repeated refinement scan changes a few low bits at most


# ---- the decode time budget ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_under_the_cap(smooth_8000) -> bytes:
    """8000 x 8000, exactly MAX_JPEG_SCANS scans: not refused for its scans, several seconds to decode."""
    return repeat_last_scan(smooth_8000, MAX_JPEG_SCANS - 10)


def test_the_budget_stops_a_slow_decode_in_time(tmp_path, slow_under_the_cap):
    started = time.perf_counter()
    decode_bytes(tmp_path, slow_under_the_cap, budget=120.0)  # decodes: it is a (heavy) JPEG
    unbounded = time.perf_counter() - started
    budget = 0.3
    assert unbounded > 6 * budget  # measured: 2.5-5.6 s on 2 shared cores

    error, seconds = rejected(tmp_path, slow_under_the_cap, budget=budget)
    print(
        f"8000x8000, {MAX_JPEG_SCANS} scans: {unbounded:.2f} s to decode; "
        f"budget {budget} s: stopped in {seconds:.2f} s"
    )
    assert error.rejection.reason == "decode_budget"
    assert f"decode_budget_seconds={budget:g}" in error.rejection.message
    assert "raise decode_budget_seconds" in error.rejection.message
    assert seconds < unbounded / 2  # measured: budget + 0.02-0.1 s


def test_the_budget_holds_in_decode_threads(tmp_path, slow_under_the_cap):
    """The pipeline decodes in threads: each decode stops on its own deadline."""
    paths = []
    for n in range(2):
        paths.append(tmp_path / f"slow-{n}.jpg")
        paths[-1].write_bytes(slow_under_the_cap)

    def attempt(path: Path) -> str:
        try:
            decode_photo(path, MAX_PIXELS, 512, 20, budget_seconds=0.3)
        except PhotoRejected as exc:
            return exc.rejection.reason
        return "decoded"

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reasons = list(pool.map(attempt, paths))
    assert reasons == ["decode_budget", "decode_budget"]
    assert time.perf_counter() - started < 2.5


def test_a_real_photo_decodes_well_within_the_default_budget(shared_data):
    from facetrain.contract.hyperparameters import DEFAULT_DECODE_BUDGET_SECONDS, Hyperparameters

    assert Hyperparameters().decode_budget_seconds == DEFAULT_DECODE_BUDGET_SECONDS
    started = time.perf_counter()
    for path in sorted(shared_data.rglob("*.jpg")):
        decode_photo(path, MAX_PIXELS, 512, 20)
    assert time.perf_counter() - started < DEFAULT_DECODE_BUDGET_SECONDS  # all 29 of them: about 1 s


# ---- the byte cap --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MAX_PHOTO_BYTES + 1, 2 * 1024**3])
def test_a_file_over_the_byte_cap_is_refused_before_it_is_read(tmp_path, size):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: no disk used, and reading it whole would take seconds and GBs
    started = time.perf_counter()
    with pytest.raises(PhotoRejected) as error:
        read_photo_bytes(path)
    assert time.perf_counter() - started < 0.5
    assert error.value.rejection.reason == "too_large"
    assert f"{size} bytes, over the {MAX_PHOTO_BYTES} bytes (20 MiB)" in error.value.rejection.message


def test_a_file_at_the_byte_cap_is_read(tmp_path):
    path = tmp_path / "full.jpg"
    with path.open("wb") as handle:
        handle.truncate(MAX_PHOTO_BYTES)
    assert len(read_photo_bytes(path)) == MAX_PHOTO_BYTES


def test_the_byte_cap_is_validates_cap():
    """One source of truth: validate refuses what the job would (the contract's cap), and the stack has no
    setting of its own that could make them disagree."""
    import inspect

    from facetrain_lambdas.validate import validate_run

    assert inspect.signature(validate_run).parameters["max_photo_bytes"].default == MAX_PHOTO_BYTES
    template = (REPOSITORY / "template.yaml").read_text(encoding="utf-8")
    assert "MAX_PHOTO_BYTES" not in template


# ---- the setting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "601", "abc", "NaN", "Infinity", "[1]"])
def test_a_bad_decode_budget_is_refused_naming_the_key(value):
    from facetrain.contract.hyperparameters import SettingsError, parse_settings

    with pytest.raises(SettingsError) as error:
        parse_settings([("hyperparameters", {"decode_budget_seconds": value})])
    assert "'decode_budget_seconds'" in str(error.value)


def test_the_decode_budget_setting_reaches_the_decoder(tmp_path, shared_data, slow_under_the_cap):
    """The pipeline (job and identify) decodes with the setting, and keeps it for the crop's re-decode."""
    from facetrain.contract.hyperparameters import parse_settings
    from facetrain.photos import PhotoRef
    from facetrain.pipeline import PhotoPipeline

    settings = parse_settings([("hyperparameters", {"decode_budget_seconds": "0.25"})])
    pipeline = PhotoPipeline(settings, encoder=None)  # type: ignore[arg-type]  # decoding needs none
    path = tmp_path / "slow.jpg"
    path.write_bytes(slow_under_the_cap)
    decoded, rejection, _ = pipeline._decode(PhotoRef("kate", "kate/slow.jpg", path))
    assert decoded is None and rejection is not None
    assert rejection.reason == "decode_budget"
    assert "decode_budget_seconds=0.25" in rejection.message
    decoded, _, _ = pipeline._decode(PhotoRef("kate", "kate/1.jpg", shared_data / KATE))
    assert decoded is not None and decoded.decode_budget_seconds == 0.25
