"""Find the photos of the `face_imgs` channel and decode them safely.

Photos are decoded by content (never by extension), EXIF orientation is applied, every mode is brought to
RGB, and oversized images are refused before their pixels are decoded. JPEGs (and MPO phone photos, whose
primary image is a JPEG) are decoded in draft mode (DCT scaling) at the smallest size the face detector
needs; the crop is re-decoded, reduced only as far as keeps the face at its crop size, when the face would
otherwise be too small.

Decoding has a budget: a file over MAX_PHOTO_BYTES is not read, a JPEG with more scans than a photo has
is refused before decoding (jpeg_scans), and each decode is stopped past `decode_budget_seconds`
(decode_budget).

HEIC/HEIF photos (iPhones' default format) are read by pillow-heif's Pillow plugin, registered below; AVIF
by Pillow's own plugin. Both come out upright, as a JPEG does after its EXIF orientation: libheif applies a
HEIF's rotation and mirroring (irot/imir, which the HEIF format makes authoritative; an iPhone writes them)
and pillow-heif sets the EXIF orientation it hands over to 1, so that nothing rotates twice (a HEIF's EXIF
tag without irot/imir is ignored, as HEIF viewers ignore it: the job sees what the person saw); an AVIF
keeps its EXIF orientation, applied here as a JPEG's. Their decode is one call into libheif/libavif: the
decode budget is checked when it returns, not during it.

Files known not to be photos (Thumbs.db, desktop.ini, text, videos: contract.photo_files, the rule validate
and `facetrain run`'s upload apply too) are skipped unread, never decoded, and listed apart (SkippedFile):
never a photo, never an identity.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .channel_layout import photos_root
from .contract.hyperparameters import DEFAULT_DECODE_BUDGET_SECONDS
from .contract.identity_names import shown_bytes, undecodable
from .contract.names import IMAGES_CHANNEL, STRANGERS_FOLDER
from .contract.names import is_skipped as _skipped  # the rule the Lambdas apply too
from .contract.photo_files import NOT_A_PHOTO, PHOTO_FORMATS, not_photo_reason
from .contract.photo_limits import MAX_PHOTO_BYTES
from .contract.shorten import clip
from .decode_budget import JPEG_READ_BYTES, BudgetedBytes, DecodeBudgetExceeded
from .folder_walk import EntryKind, WalkEntry, walk
from .jpeg_scans import MAX_JPEG_SCANS, count_scans
from .sagemaker_env import ContractError

# Pillow's own bomb guard is set per call from max_image_pixels; truncated files must fail, not pad.
ImageFile.LOAD_TRUNCATED_IMAGES = False
_EXIF_ORIENTATION = 0x0112
_SIDES_SWAPPED = (5, 6, 7, 8)  # orientations that rotate by 90 degrees
# HEIC/HEIF through Image.open, for every caller of this module (the job, `facetrain identify`). Only the
# primary image is read: thumbnails, depth maps and auxiliary images are not even listed.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


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
class SkippedFile:
    """A file in a person's (or the strangers') folder known not to be a photo (Thumbs.db, notes.txt, a
    video: contract.photo_files), skipped unread as validate and the upload skip it. Never a photo nor an
    identity: it is counted apart (metrics.json files_skipped) and listed in rejected.csv with its reason
    (`not_a_photo`, `message`), where a person finds why it was not used."""

    photo: PhotoRef
    message: str  # contract.photo_files.not_photo_reason

    reason = NOT_A_PHOTO


@dataclass(frozen=True)
class ChannelListing:
    """What the channel holds: photos per identity folder, stray files at its top level, and the known
    strangers' photos (face_imgs/_strangers/, any depth), listed apart: they are never enrolled.
    `misnamed`: what is rejected unread, each with its rejection: files whose path is not valid UTF-8 and
    folders that cannot be listed (key `<folder>/`). `skipped`: the files in a person's (or the
    strangers') folder that are not photos (contract.photo_files), neither photos nor rejections."""

    photos: list[PhotoRef]
    stray_files: list[str]
    strangers: list[PhotoRef] = field(default_factory=list)
    misnamed: list[tuple[PhotoRef, Rejection]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


NAME_NOT_UTF8 = "name_not_utf8"


def _name_rejection(parts: tuple[str, ...], identity: str) -> Rejection:
    """Why a file whose path (relative to the channel) is not valid UTF-8 is not used: names the first
    such part, its bytes that are not UTF-8 written `\\xNN`."""
    index = next(i for i, part in enumerate(parts) if undecodable(part))
    if index == 0 and identity != STRANGERS_FOLDER:
        what = "the identity folder's name"
    elif index == len(parts) - 1:
        what = "the file's name"
    else:
        what = "the name of the folder"
    return Rejection(
        NAME_NOT_UTF8,
        f"{what} '{shown_bytes(parts[index])}' is not valid UTF-8 (its other bytes shown as \\xNN), so "
        "it cannot be written into the outputs: rename it in UTF-8 and upload it again",
    )


def _listed(path: Path, root: Path, identity: str) -> tuple[PhotoRef, Rejection | None]:
    """The PhotoRef of a file, with a rejection when its path is not valid UTF-8: then its identity and
    key are the names as `shown_bytes` writes them, never text that cannot be encoded."""
    relative = path.relative_to(root)
    key = relative.as_posix()
    if not undecodable(key):
        return PhotoRef(identity=identity, key=key, path=path), None
    ref = PhotoRef(identity=shown_bytes(identity), key=shown_bytes(key), path=path)
    return ref, _name_rejection(relative.parts, identity)


def _skipped_by_job(entry: WalkEntry) -> bool:
    """The job's rule for a channel: names `_*` or `.*` are not read, except the known strangers' folder
    at the top (a file or a cycle named `_strangers` is skipped too). A `.DS_Store` is so ignored, never
    counted among the photos; validate and the upload name it (contract.photo_files)."""
    if entry.parts == (STRANGERS_FOLDER,) and entry.kind is EntryKind.FOLDER:
        return False
    return _skipped(entry.name)


def _unlisted(entry: WalkEntry, root: Path, identity: str) -> tuple[PhotoRef, Rejection]:
    """The rejection of a folder that cannot be listed (key `<its path>/`): none of its photos is read."""
    ref, _ = _listed(entry.path, root, identity)
    reason = entry.error.strerror if entry.error is not None else "unknown error"
    return PhotoRef(identity=ref.identity, key=f"{ref.key}/", path=ref.path), Rejection(
        "unreadable",
        f"the folder cannot be listed ({reason}), so none of the photos in it were read; make it a "
        "readable folder and upload it again",
    )


def list_channel(channel: Path, manifest_prefix: str | None = None) -> ChannelListing:
    """List `<identity>/<photo>` files in a stable order, skipping folders and files named `_*` or `.*`,
    except the known strangers' folder `_strangers/`, whose files (any depth) are listed apart.

    With the manifest's key prefix, the photos are found whether SageMaker wrote each entry at its suffix
    or under its full key (channel_layout.photos_root; ContractError for a tree that mixes the two); keys
    are `<identity>/<photo>` (and `_strangers/...`) either way.

    The tree is walked by folder_walk, as `facetrain run` walks IMAGES_DIR to upload it: symbolic links to
    folders are followed, a link to a folder that contains it (a cycle) is not (what it leads to is listed
    already). Anything in a folder but a folder is listed, so that a broken link or a FIFO gets its
    rejected.csv row (read_photo_bytes refuses what is not a regular file) instead of vanishing; at the
    top it is a stray file. A folder that cannot be listed is rejected unread (`unreadable`, key
    `<folder>/`); the channel itself, ContractError.

    A name that is not valid UTF-8 (Linux hands its bytes over as surrogates) never reaches the outputs
    as such: a stray file's name is listed as `shown_bytes` writes it, a photo under such a name is
    rejected unread (`misnamed`; a whole identity folder's photos when the folder's name is the one).
    A file known not to be a photo (Thumbs.db, notes.txt, a video: contract.photo_files) in a person's
    or the strangers' folder, whatever its name's encoding, is skipped unread (`skipped`): validate and the
    upload skip it too (they never hand it to the job); a folder holding only such files is no identity."""
    root = photos_root(channel, manifest_prefix)
    photos: list[PhotoRef] = []
    stray: list[str] = []
    strangers: list[PhotoRef] = []
    misnamed: list[tuple[PhotoRef, Rejection]] = []
    skipped: list[SkippedFile] = []
    for entry in walk(root, _skipped_by_job):
        if not entry.parts:
            reason = entry.error.strerror if entry.error is not None else "unknown error"
            raise ContractError(
                f"The '{IMAGES_CHANNEL}' channel ({shown_bytes(str(root))}) cannot be listed ({reason}); "
                "the job reads it as SageMaker wrote it: check how the channel was downloaded"
            )
        identity = entry.parts[0]
        if entry.kind is EntryKind.UNLISTABLE:
            misnamed.append(_unlisted(entry, root, identity))
        elif entry.kind in (EntryKind.FOLDER, EntryKind.CYCLE):
            continue
        elif len(entry.parts) == 1:  # at the top: never enrolled
            if not undecodable(entry.name) and (reason := not_photo_reason(entry.name)) is not None:
                # a Thumbs.db beside the folders: skipped, as validate and the upload skip it (no identity)
                skipped.append(SkippedFile(PhotoRef(identity="", key=entry.name, path=entry.path), reason))
            else:  # a file, a broken link, a FIFO: a stray file, reported
                stray.append(shown_bytes(entry.name))
        else:
            ref, rejection = _listed(entry.path, root, identity)
            if (reason := not_photo_reason(entry.name)) is not None:
                skipped.append(SkippedFile(ref, reason))
            elif rejection is not None:
                misnamed.append((ref, rejection))
            elif identity == STRANGERS_FOLDER:
                strangers.append(ref)
            else:
                photos.append(ref)
    return ChannelListing(
        photos=photos, stray_files=stray, strangers=strangers, misnamed=misnamed, skipped=skipped
    )


@dataclass
class DecodedPhoto:
    """A photo ready for detection: a small RGB copy for the detector and a source for the crop."""

    sha256: str
    size: tuple[int, int]  # full-resolution (width, height) after EXIF orientation
    detection_image: Image.Image  # longer side ≤ detection_max_side
    crop_image: Image.Image  # decoded image the crop is taken from (maybe draft-reduced)
    data: bytes  # the file's bytes, kept to re-decode at full resolution when needed
    decode_budget_seconds: float = DEFAULT_DECODE_BUDGET_SECONDS  # for each re-decode too

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


def _open_checked(source: BudgetedBytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse photos over the pixel budget, and JPEGs with more scans than
    MAX_JPEG_SCANS, before any decoding."""
    try:
        image = Image.open(source)
    except Image.DecompressionBombError:
        raise PhotoRejected(
            "too_large",
            f"more than max_image_pixels={max_pixels} pixels; resize the photo or raise max_image_pixels",
        ) from None
    except UnidentifiedImageError:
        raise PhotoRejected(
            "not_an_image",
            f"not an image: the content is in no format the job reads; upload a {PHOTO_FORMATS} photo",
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
    if _is_jpeg(image):
        scans = count_scans(source.getvalue(), stop_after=MAX_JPEG_SCANS)
        if scans > MAX_JPEG_SCANS:
            raise PhotoRejected(
                "too_many_scans",
                f"a JPEG with more than {MAX_JPEG_SCANS} scans (cameras and encoders write 1 to about 20): "
                "each scan is decoded again over the whole image, a decode-time bomb; re-export it as a "
                "plain JPEG",
            )
    return image


def _is_jpeg(image: Image.Image) -> bool:
    """A JPEG, or an MPO phone photo (Ultra HDR gain map, depth map): its primary image is a JPEG, read
    and decoded as one (Pillow's MpoImageFile is a JpegImageFile), draft mode included."""
    return isinstance(image, JpegImagePlugin.JpegImageFile)


def _decode(
    image: Image.Image, source: BudgetedBytes, draft_side: int | None, budget_seconds: float
) -> tuple[Image.Image, bool]:
    """Decode (draft-reduced when asked and possible) within `budget_seconds`, apply EXIF orientation,
    convert to RGB. Also says whether the orientation applied here swapped the sides: a format whose
    plugin applies the orientation itself on load (Pillow's TIFF: its header size is already upright)
    leaves none to apply, so the one value decides both the transpose and the swap."""
    jpeg = _is_jpeg(image)
    if draft_side is not None and jpeg:
        width, height = image.size
        factor = max(width, height) / draft_side
        if factor >= 2:
            image.draft("RGB", (int(width / factor) + 1, int(height / factor) + 1))
    source.start(budget_seconds, JPEG_READ_BYTES if jpeg else None)
    try:
        image.load()
        source.check()  # the decoder's last steps, after its last read, count too
        pending = image.getexif().get(_EXIF_ORIENTATION)
        oriented = ImageOps.exif_transpose(image) or image
        return to_rgb(oriented), pending in _SIDES_SWAPPED
    except DecodeBudgetExceeded as exc:
        raise PhotoRejected(
            "decode_budget",
            f"decoding took longer than decode_budget_seconds={exc.budget_seconds:g} (stopped after "
            f"{exc.elapsed_seconds:.1f} s); re-export the photo as a plain JPEG of at most a few thousand "
            "pixels a side, or raise decode_budget_seconds",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoRejected(
            "unreadable", f"the image data is truncated or corrupt ({exc}); re-export or re-upload the photo"
        ) from None


def read_photo_bytes(path: Path, max_bytes: int = MAX_PHOTO_BYTES) -> bytes:
    """The bytes of a photo file, or PhotoRejected: a broken symbolic link or an unreadable file is
    `unreadable`, anything but a regular file (a FIFO, a socket, a device) `not_an_image`, checked on the
    opened file itself, so that nothing can block reading it; a file over `max_bytes` (validate's cap,
    contract.photo_limits) is `too_large`, from its size before anything is read.

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
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise PhotoRejected(
                "not_an_image", "not a regular file (a FIFO, socket or device): only photo files are read"
            )
        if status.st_size > max_bytes:
            raise _too_many_bytes(status.st_size, max_bytes)
        try:
            data = opened.read(max_bytes + 1)  # a file that grew since fstat is not read whole either
        except OSError as exc:
            raise PhotoRejected("unreadable", f"the file cannot be read ({exc.strerror})") from None
        if len(data) > max_bytes:
            raise _too_many_bytes(len(data), max_bytes, at_least=True)
        return data


def _too_many_bytes(size: int, max_bytes: int, at_least: bool = False) -> PhotoRejected:
    return PhotoRejected(
        "too_large",
        f"the file is {'more than ' if at_least else ''}{size} bytes, over the {max_bytes} bytes "
        f"({max_bytes / 2**20:g} MiB) a photo may have; export the photo smaller",
    )


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


def decode_photo(
    path: Path,
    max_pixels: int,
    detection_max_side: int,
    min_side: int,
    budget_seconds: float = DEFAULT_DECODE_BUDGET_SECONDS,
) -> DecodedPhoto:
    """Read one photo and prepare its detection copy; raise PhotoRejected with the reason otherwise.
    `budget_seconds` bounds each decode of it (this one and a re-decode for the crop)."""
    data = read_photo_bytes(path)
    source = BudgetedBytes(data)
    image = _open_checked(source, max_pixels)
    full_size = image.size  # before draft mode reduces it
    decoded, swapped = _decode(image, source, detection_max_side, budget_seconds)
    if swapped:
        full_size = (full_size[1], full_size[0])
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
        decode_budget_seconds=budget_seconds,
    )


def decode_full_resolution(photo: DecodedPhoto, max_pixels: int) -> Image.Image:
    """Decode the photo again without draft reduction (for a face too small in the reduced copy)."""
    return _redecode(photo, max_pixels, draft_side=None)


def decode_reduced(photo: DecodedPhoto, max_pixels: int, reduction: float) -> Image.Image:
    """Decode the photo again, reduced by less than `reduction` (a JPEG's DCT scaling: 1/2, 1/4 or 1/8 when
    that leaves it larger than its full size / `reduction`), else at full resolution. A face `reduction`
    times larger than a needed side stays larger than that side in the result."""
    if reduction < 2:
        return decode_full_resolution(photo, max_pixels)
    return _redecode(photo, max_pixels, draft_side=math.ceil(max(photo.size) / reduction))


def _redecode(photo: DecodedPhoto, max_pixels: int, draft_side: int | None) -> Image.Image:
    """The photo decoded again from its bytes, within its decode budget, upright."""
    source = BudgetedBytes(photo.data)
    image = _open_checked(source, max_pixels)
    return _decode(image, source, draft_side, photo.decode_budget_seconds)[0]
