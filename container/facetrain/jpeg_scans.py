"""Count the scans of a JPEG before it is decoded: the decode-time bomb guard.

A progressive JPEG is decoded scan by scan, and each scan touches every coefficient of the components it
codes, so decoding time grows with the number of scans while the pixel and byte caps stay satisfied:
libjpeg only warns about a repeated scan, and a 460 KB 8000x8000 photo whose last scan is repeated takes
27 s. Real photos have few scans (see MAX_JPEG_SCANS), so the count is checked first.

Written here because neither Pillow nor libjpeg (as Pillow drives it) exposes a scan count or limit. The
count is only worth anything if it sees every scan libjpeg will decode, so the walk finds markers the way
libjpeg's decoder does (jdmarker.c, jdhuff.c), not only as ITU-T T.81 (B.1.1) says a file should be:

- between segments, libjpeg's next_marker() discards any bytes up to a 0xFF (with a warning, "N
  extraneous bytes", never an error), skips 0xFF fill bytes, and discards 0xFF00; its entropy decoder
  ends a scan's data at the first 0xFF followed (after fill bytes) by anything but 0x00. Both are the
  same search, `_NEXT_MARKER`, so one stray byte cannot end the count while the decoder goes on;
- a segment is skipped by its declared length as libjpeg skips it: APPn, COM and DNL by the length
  whatever it is (a length under 2 counts as 2: just the length field), and the segments libjpeg parses
  (SOF, SOS, DHT, DQT, DRI, DAC) by their length or not at all (a length that disagrees with the content is
  a fatal error: nothing after it is decoded). So a wrong length cannot hide a scan from the count without
  hiding it from the decoder too. Such files are counted, not refused as unreadable: refusing them would
  mean re-implementing libjpeg's checks of every segment, and a short APPn length is only a warning to it;
- what libjpeg refuses outright (an unknown or unsupported marker, a second SOI) is walked past, so the
  count is then an upper bound of the scans decoded before it gives up.

A byte search for 0xFFDA would also count bytes inside APPn/COM segments (an EXIF thumbnail is a whole
JPEG with its own scans), so it would refuse a real photo that carries a thumbnail or a comment.
"""

from __future__ import annotations

import re

# The scan cap, with a wide margin over what encoders write: a baseline JPEG has 1 scan (interleaved) or 1
# per component; libjpeg's default progressive script (jcparam.c, jpeg_simple_progression) writes 10
# scans for YCbCr and 2 + 4 per component otherwise (18 for CMYK). Measured on the 29 photos of
# ../shared/data (tests/container/test_decode_budget.py): 17 have 1 scan, 12 have 10 or 11. More than 64
# is not what an encoder makes but a decode-time bomb, and 64 scans of a photo within max_image_pixels
# decode in seconds (an 8000x8000 one: 2.5-8 s on 2 shared cores), within decode_budget_seconds.
MAX_JPEG_SCANS = 64

_EOI, _SOS = 0xD9, 0xDA
# The next marker that can hold or end scans: 0xFF, then a marker byte; with 0xFF fill bytes the match is
# at the last 0xFF. Not such a marker, so searched past: 0x00 (a stuffed byte, or a stray 0xFF00 that
# next_marker discards), TEM (0x01) and RST0-7 (0xD0-0xD7: no length, libjpeg reads on to the next
# marker), and SOI (0xD8: the file's own at offset 0; a second one is fatal to libjpeg). Everything before
# the match is entropy-coded data or bytes libjpeg discards. A regular expression so that 20 MB of data or
# of stray bytes is searched at C speed (about 15 ms).
_NEXT_MARKER = re.compile(rb"\xff[\x02-\xcf\xd9-\xfe]")
# The same marker bytes, to test the usual case (the next segment's marker right where a segment ends)
# without a search: it halves the walk over a flood of tiny segments.
_MARKER_BYTES = frozenset([*range(0x02, 0xD0), *range(0xD9, 0xFF)])


def count_scans(data: bytes, stop_after: int | None = None) -> int:
    """The SOS markers (scans) that libjpeg reads from the first image in `data` (up to its EOI: the
    other images of an MPO file are not decoded), or more where libjpeg would stop at an error first (see
    the module's note); counting stops once past `stop_after`. Meant for a file Pillow opened as a JPEG
    (it starts with SOI); never raises: truncated data ends the count with the scans found, as libjpeg
    decodes those before it stops."""
    scans = 0
    position = 0
    end = len(data)
    while True:
        if position + 1 < end and data[position] == 0xFF and data[position + 1] in _MARKER_BYTES:
            after_marker = position + 2
        else:
            found = _NEXT_MARKER.search(data, position)
            if found is None:
                break  # truncated: the decoder stops here too
            after_marker = found.end()
        marker = data[after_marker - 1]
        if marker == _EOI or after_marker + 2 > end:
            break
        length = (data[after_marker] << 8) | data[after_marker + 1]
        position = after_marker + max(length, 2)
        if marker == _SOS:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
    return scans
