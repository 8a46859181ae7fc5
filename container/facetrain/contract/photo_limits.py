"""Limits on photo files that the validate Lambda and the job (and `facetrain identify`) share.

Standard-library only, like the rest of facetrain.contract, which the Lambdas' layer ships.
"""

from __future__ import annotations

# The largest photo file, in bytes: validate refuses a run holding a larger one, and the job and
# `facetrain identify` refuse to read one, checked on the file's size before its bytes are read. No stack
# setting overrides it: one that differed would let validate pass photos the job refuses. A 20 MiB JPEG
# is a 100+ megapixel photo: more than max_image_pixels' default allows anyway.
MAX_PHOTO_BYTES = 20 * 1024 * 1024
