"""Decode-time bombs and multi-picture (MPO) photos, derived at test time from real photos.

A progressive JPEG is re-encoded by Pillow (libjpeg's default progressive script: 10 scans), split into
its header, its scans and its end, and reassembled with scans repeated: libjpeg only warns about a
repeated scan and decodes it again, so decoding time grows with the repeats while the bytes stay small.

The split relies on Pillow's own output: no APPn/COM segment holding 0xFFDA, no restart markers, and
entropy-coded data in which 0xFF is always followed by 0x00, so every 0xFFDA begins a scan and the end of
a scan is the next 0xFF that is not followed by 0x00. It is independent of facetrain.jpeg_scans (the
code under test).

The hostile variants put bytes where libjpeg tolerates them with a warning: stray bytes between segments
(its next_marker() discards them) and segments whose declared length is wrong (libjpeg skips an APPn or
COM segment by its length field, whatever the payload, and discards what follows up to the next marker).
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SOS = b"\xff\xda"
EOI = b"\xff\xd9"


@dataclass(frozen=True)
class ProgressiveParts:
    """A progressive JPEG as Pillow wrote it: everything before the first scan, each scan (SOS header and
    its entropy-coded data, plus any table segment that follows it), and the end (EOI)."""

    head: bytes
    scans: tuple[bytes, ...]
    tail: bytes

    def join(self, scans: list[bytes]) -> bytes:
        return self.head + b"".join(scans) + self.tail


def _rgb(photo: Path, long_side: int | None) -> Image.Image:
    """The photo as RGB, resized to `long_side` pixels on its longer side when given."""
    with Image.open(photo) as opened:
        image = opened.convert("RGB")
    if long_side is None:
        return image
    factor = long_side / max(image.size)
    return image.resize(
        (round(image.width * factor), round(image.height * factor)), Image.Resampling.BILINEAR
    )


def progressive_jpeg(photo: Path, long_side: int | None = None, quality: int = 90) -> bytes:
    """The photo re-encoded as a progressive JPEG, optionally resized to `long_side` pixels."""
    image = _rgb(photo, long_side)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, progressive=True)
    return out.getvalue()


def split_progressive(data: bytes) -> ProgressiveParts:
    """Split Pillow's progressive JPEG into head, scans and tail (see the module's note)."""
    first = data.index(SOS)
    starts = []
    position = first
    while position != -1:
        starts.append(position)
        position = data.find(SOS, position + 2)
    if not data.endswith(EOI):
        raise ValueError("not a complete JPEG")
    bounds = [*starts, len(data) - 2]
    scans = tuple(data[a:b] for a, b in itertools.pairwise(bounds))
    return ProgressiveParts(head=data[:first], scans=scans, tail=EOI)


def naive_scan_count(data: bytes) -> int:
    """0xFFDA occurrences: the scan count of Pillow's own output (nothing else there holds 0xFFDA)."""
    return data.count(SOS)


def repeat_last_scan(data: bytes, repeats: int) -> bytes:
    """The bomb a hostile user made: the last scan written `repeats` more times."""
    parts = split_progressive(data)
    return parts.join([*parts.scans, *[parts.scans[-1]] * repeats])


def repeat_smallest_scan(data: bytes, repeats: int) -> bytes:
    """Many tiny scans: the smallest scan (in bytes) written `repeats` more times, before the end."""
    parts = split_progressive(data)
    smallest = min(parts.scans, key=len)
    return parts.join([*parts.scans, *[smallest] * repeats])


def with_segment_before_scans(data: bytes, marker: int, payload: bytes) -> bytes:
    """`data` with one more marker segment (APPn, COM) inserted before the first scan."""
    parts = split_progressive(data) if SOS in data else None
    head = parts.head if parts else data[:2]
    segment = bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    return head + segment + data[len(head) :]


def data_and_tables(scan: bytes) -> tuple[bytes, bytes]:
    """One scan of `split_progressive` split into its SOS header with its entropy-coded data, and the
    table segments (DHT) after them, if any: the data ends at the first 0xFF not followed by 0x00."""
    position = 2 + int.from_bytes(scan[2:4], "big")  # past the SOS header
    while (position := scan.find(b"\xff", position)) != -1 and scan[position + 1] == 0:
        position += 2
    return (scan, b"") if position == -1 else (scan[:position], scan[position:])


def first_scan_offset(data: bytes) -> int:
    """Where the first SOS of a well-formed JPEG (a camera's) begins: its header segments are walked by
    their lengths, since an EXIF thumbnail in APP1 holds 0xFFDA bytes of its own."""
    position = 2
    while data[position + 1] != SOS[1]:
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return position


def stray_before_first_scan(data: bytes, stray: bytes) -> bytes:
    """`stray` bytes between the last header segment (a DHT) and the first SOS, as a hostile user put
    one 0x00: libjpeg warns about extraneous bytes and decodes on."""
    parts = split_progressive(data)
    return parts.head + stray + b"".join(parts.scans) + parts.tail


def stray_after_tables_between_scans(data: bytes, stray: bytes) -> bytes:
    """`stray` bytes after the table segments (DHT) that sit between two scans, after each such run."""
    parts = split_progressive(data)
    scans = []
    for scan in parts.scans:
        entropy, tables = data_and_tables(scan)
        scans.append(entropy + tables + stray if tables else scan)
    return parts.join(scans)


def stray_before_every_scan(data: bytes, stray: bytes) -> bytes:
    """`stray` bytes before every SOS (after the data of the scan before it, or its tables)."""
    parts = split_progressive(data)
    return parts.join([stray + scan for scan in parts.scans])


# Text for a segment's payload that holds no 0xFF: bytes past a segment's declared length are then stray
# bytes that libjpeg discards up to the next marker.
PAYLOAD = b"written by a hostile user; no 0xFF byte in here"


def segment(marker: int, declared_length: int, payload: bytes = PAYLOAD) -> bytes:
    """A marker segment whose length field says `declared_length`, whatever the payload's real size."""
    return bytes([0xFF, marker]) + declared_length.to_bytes(2, "big") + payload


def segment_between_scans(data: bytes, inserted: bytes) -> bytes:
    """`inserted` (a segment, maybe with a wrong length) before every SOS, after the first one."""
    parts = split_progressive(data)
    return parts.join([parts.scans[0], *[inserted + scan for scan in parts.scans[1:]]])


def tables_length_off(data: bytes, delta: int) -> bytes:
    """Every table segment between scans with its length field `delta` bytes off its content."""
    parts = split_progressive(data)
    scans = []
    for scan in parts.scans:
        entropy, tables = data_and_tables(scan)
        if tables:
            length = int.from_bytes(tables[2:4], "big") + delta
            tables = tables[:2] + length.to_bytes(2, "big") + tables[4:]
        scans.append(entropy + tables)
    return parts.join(scans)


def mpo_photo(photo: Path, long_side: int | None = None, extra_frames: int = 1) -> bytes:
    """A phone-style multi-picture file: the photo as the primary image, then `extra_frames` smaller
    images (as a gain map or a depth map would be), written by Pillow's MPO encoder (APP2 MPF block)."""
    primary = _rgb(photo, long_side)
    extras = [
        primary.resize((primary.width // 4, primary.height // 4)).convert("L").convert("RGB")
        for _ in range(extra_frames)
    ]
    out = io.BytesIO()
    primary.save(out, "MPO", save_all=True, append_images=extras, quality=90)
    return out.getvalue()
