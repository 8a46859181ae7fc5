"""Find the photos of the `face_imgs` channel and decode them safely.

Photos are decoded by content (never by extension), EXIF orientation is applied, every mode is brought to
RGB, and oversized images are refused before their pixels are decoded. JPEGs are decoded in draft mode
(DCT scaling) at the smallest size the face detector needs; the crop is re-decoded, reduced only as far as
keeps the face at its crop size, when the face would otherwise be too small.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .channel_layout import photos_root
from .contract.names import STRANGERS_FOLDER
from .contract.names import is_skipped as _skipped  # the rule the Lambdas apply too
from .contract.shorten import clip

# Pillow's own bomb guard is set per call from max_image_pixels; truncated files must fail, not pad.
ImageFile.LOAD_TRUNCATED_IMAGES = False
_EXIF_ORIENTATION = 0x0112
_SIDES_SWAPPED = (5, 6, 7, 8)  # orientations that rotate by 90 degrees


@dataclass(frozen=True, order=True)
class PhotoRef:
    """One file of the channel: its identity (top folder) and its key relative to the channel. A known
    stranger's photo has the identity `_strangers` (contract.names.STRANGERS_FOLDER), which no identity can
    have (folders starting with `_` are never identities), and a key `_strangers/...`."""

    identity: str
    key: str
    path: Path

    @property
    def is_stranger(self) -> bool:
        """A known stranger's photo (in face_imgs/_strangers/): never enrolled, a non-mated search."""
        return self.identity == STRANGERS_FOLDER


@dataclass(frozen=True)
class Rejection:
    """Why a photo is not used: a stable reason code and a sentence a person understands."""

    reason: str
    message: str


class PhotoRejected(Exception):
    """Raised while reading one photo; carries the Rejection that goes to rejected.csv."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason, message)


@dataclass(frozen=True)
class ChannelListing:
    """What the channel holds: photos per identity folder, stray files at its top level, and the known
    strangers' photos (face_imgs/_strangers/, any depth), listed apart: they are never enrolled."""

    photos: list[PhotoRef]
    stray_files: list[str]
    strangers: list[PhotoRef] = field(default_factory=list)


def _files_under(folder: Path, root: Path, identity: str) -> list[PhotoRef]:
    """Every file under `folder` (any depth), keyed relative to `root`, skipping names `_*` or `.*` below
    it. Anything but a folder is listed, so that a broken link or a FIFO gets its rejected.csv row
    (read_photo_bytes refuses what is not a regular file) instead of vanishing."""
    found: list[PhotoRef] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_dir() and not any(_skipped(part) for part in relative.parts[1:]):
            found.append(PhotoRef(identity=identity, key=relative.as_posix(), path=path))
    return found


def list_channel(channel: Path, manifest_prefix: str | None = None) -> ChannelListing:
    """List `<identity>/<photo>` files in a stable order, skipping folders and files named `_*` or `.*`,
    except the known strangers' folder `_strangers/`, whose files (any depth) are listed apart.

    With the manifest's key prefix, the photos are found whether SageMaker wrote each entry at its suffix
    or under its full key (channel_layout.photos_root; ContractError for a tree that mixes the two); keys
    are `<identity>/<photo>` (and `_strangers/...`) either way."""
    root = photos_root(channel, manifest_prefix)
    photos: list[PhotoRef] = []
    stray: list[str] = []
    strangers: list[PhotoRef] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name == STRANGERS_FOLDER and entry.is_dir():
            strangers.extend(_files_under(entry, root, STRANGERS_FOLDER))
            continue
        if _skipped(entry.name):
            continue
        if not entry.is_dir():  # a file, a broken link, a FIFO: reported, never enrolled
            stray.append(entry.name)
            continue
        photos.extend(_files_under(entry, root, entry.name))
    return ChannelListing(photos=photos, stray_files=stray, strangers=strangers)


@dataclass
class DecodedPhoto:
    """A photo ready for detection: a small RGB copy for the detector and a source for the crop."""

    sha256: str
    size: tuple[int, int]  # full-resolution (width, height) after EXIF orientation
    detection_image: Image.Image  # longer side ≤ detection_max_side
    crop_image: Image.Image  # decoded image the crop is taken from (maybe draft-reduced)
    data: bytes  # the file's bytes, kept to re-decode at full resolution when needed

    @property
    def detection_scale(self) -> float:
        """Full-resolution pixels per detection-copy pixel."""
        return self.size[0] / self.detection_image.width

    @property
    def crop_scale(self) -> float:
        """Full-resolution pixels per crop-image pixel."""
        return self.size[0] / self.crop_image.width


def to_rgb(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to RGB; transparent areas become white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("P", "PA") and ("transparency" in image.info or image.mode == "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def configure_pillow(max_pixels: int) -> None:
    """Set Pillow's process-wide bomb guard once, from the main thread, before photos are decoded.

    Pillow refuses images over twice MAX_IMAGE_PIXELS itself and only warns between once and twice;
    `_open_checked` refuses those from the header, so the warning is silenced rather than caught per call
    (warnings filters are not thread-safe).
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse photos over the pixel budget before any decoding."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise PhotoRejected(
            "too_large",
            f"more than max_image_pixels={max_pixels} pixels; resize the photo or raise max_image_pixels",
        ) from None
    except UnidentifiedImageError:
        raise PhotoRejected(
            "not_an_image",
            "not an image: the content is in no format Pillow reads; upload a JPEG, PNG or WebP photo",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # e.g. a PNG text/ICC chunk past Pillow's limit
        raise PhotoRejected(
            "unreadable",
            f"the image header cannot be read ({clip(str(exc), 160)}); re-export or re-upload the photo",
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise PhotoRejected(
            "too_large",
            f"{width}x{height} = {width * height} pixels is more than max_image_pixels={max_pixels}; "
            "resize the photo or raise max_image_pixels",
        )
    return image


def _decode(image: Image.Image, draft_side: int | None) -> Image.Image:
    """Decode (draft-reduced when asked and possible), apply EXIF orientation, convert to RGB."""
    if draft_side is not None and image.format == "JPEG":
        width, height = image.size
        factor = max(width, height) / draft_side
        if factor >= 2:
            image.draft("RGB", (int(width / factor) + 1, int(height / factor) + 1))
    try:
        image.load()
        oriented = ImageOps.exif_transpose(image) or image
        return to_rgb(oriented)
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoRejected(
            "unreadable", f"the image data is truncated or corrupt ({exc}); re-export or re-upload the photo"
        ) from None


def read_photo_bytes(path: Path) -> bytes:
    """The bytes of a photo file, or PhotoRejected: a broken symbolic link or an unreadable file is
    `unreadable`, anything but a regular file (a FIFO, a socket, a device) `not_an_image`, checked on the
    opened file itself, so that nothing can block reading it.

    Symbolic links to regular files are followed, wherever they point: S3 never puts links in a channel,
    so a link is the local user's own (`make job` and the tests link photos rather than copy them).
    """
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        what = "a symbolic link to a file that does not exist" if path.is_symlink() else "gone"
        raise PhotoRejected(
            "unreadable", f"the file cannot be read: {what}; upload the photo again"
        ) from None
    except OSError as exc:
        raise PhotoRejected("unreadable", f"the file cannot be read ({exc.strerror})") from None
    with os.fdopen(handle, "rb") as opened:
        if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
            raise PhotoRejected(
                "not_an_image", "not a regular file (a FIFO, socket or device): only photo files are read"
            )
        try:
            return opened.read()
        except OSError as exc:
            raise PhotoRejected("unreadable", f"the file cannot be read ({exc.strerror})") from None


def photo_sha256(path: Path) -> str | None:
    """sha256 of a photo file's bytes, or None when it cannot be read as a regular file."""
    try:
        return hashlib.sha256(read_photo_bytes(path)).hexdigest()
    except PhotoRejected:
        return None


def photo_digests(photos: list[PhotoRef], workers: int = 4) -> list[str | None]:
    """photo_sha256 of each photo, in order; the files are read in `workers` threads (I/O-bound)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        return list(pool.map(photo_sha256, (photo.path for photo in photos)))


def decode_photo(path: Path, max_pixels: int, detection_max_side: int, min_side: int) -> DecodedPhoto:
    """Read one photo and prepare its detection copy; raise PhotoRejected with the reason otherwise."""
    data = read_photo_bytes(path)
    image = _open_checked(data, max_pixels)
    full_size = image.size
    if image.getexif().get(_EXIF_ORIENTATION) in _SIDES_SWAPPED:
        full_size = (full_size[1], full_size[0])
    decoded = _decode(image, draft_side=detection_max_side)
    if min(full_size) < min_side:
        raise PhotoRejected(
            "too_small",
            f"{full_size[0]}x{full_size[1]} px is smaller than the smallest face searched for "
            f"(min_face_size={min_side} px); use a larger photo",
        )
    detection = decoded
    if max(decoded.size) > detection_max_side:
        factor = max(decoded.size) / detection_max_side
        detection = decoded.resize(
            (max(1, round(decoded.width / factor)), max(1, round(decoded.height / factor))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
    if min(detection.size) < min_side:  # MTCNN cannot search an image thinner than its smallest face
        raise PhotoRejected(
            "too_small",
            f"{full_size[0]}x{full_size[1]} px is too thin: reduced to {detection.width}x{detection.height} "
            f"for detection (detection_max_side={detection_max_side}) it is narrower than the smallest face "
            f"searched for (min_face_size={min_side} px); crop the photo closer to the face",
        )
    return DecodedPhoto(
        sha256=hashlib.sha256(data).hexdigest(),
        size=full_size,
        detection_image=detection,
        crop_image=decoded,
        data=data,
    )


def decode_full_resolution(photo: DecodedPhoto, max_pixels: int) -> Image.Image:
    """Decode the photo again without draft reduction (for a face too small in the reduced copy)."""
    return _decode(_open_checked(photo.data, max_pixels), draft_side=None)


def decode_reduced(photo: DecodedPhoto, max_pixels: int, reduction: float) -> Image.Image:
    """Decode the photo again, reduced by less than `reduction` (a JPEG's DCT scaling: 1/2, 1/4 or 1/8 when
    that leaves it larger than its full size / `reduction`), else at full resolution. A face `reduction`
    times larger than a needed side stays larger than that side in the result."""
    if reduction < 2:
        return decode_full_resolution(photo, max_pixels)
    return _decode(_open_checked(photo.data, max_pixels), draft_side=math.ceil(max(photo.size) / reduction))
