"""Photos whose pixels are stored turned or mirrored, with the EXIF orientation (1-8) that brings them back
upright, derived at test time from a real photo (../shared/data has no EXIF rotation)."""

from __future__ import annotations

import io

from PIL import Image

EXIF_ORIENTATION = 0x0112

# Stored pixels for each orientation: the inverse of what the tag tells a viewer to do (TIFF 6.0 / EXIF
# 2.3: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 CW, 7 transverse, 8 rotate 90 CCW), so that
# applying the tag (ImageOps.exif_transpose) gives the upright photo back.
STORED_FOR_ORIENTATION: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
SIDES_SWAPPED = (5, 6, 7, 8)


def exif_oriented(upright: Image.Image, orientation: int, fmt: str, **options: object) -> bytes:
    """`upright` stored as `fmt` (TIFF, JPEG…) turned for `orientation`, with that orientation tag."""
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, fmt, exif=exif, **options)
    return buffer.getvalue()
