"""A photos folder as people have them, derived at test time from faces-dev: iPhone HEIC and AVIF photos
stored turned with an EXIF orientation tag, and the files operating systems, phones and people leave
beside photos (Thumbs.db, .DS_Store, desktop.ini, notes, a video). Nothing of ../shared/data is copied
into the checkout: JPEGs are linked, the HEIC/AVIF are written under the test's own folder."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import facetrain.photos  # noqa: F401  (registers pillow-heif's HEIF opener and saver with Pillow)
from PIL import Image

from support.oriented_photos import EXIF_ORIENTATION, STORED_FOR_ORIENTATION

# A phone photo of each format: (person folder, its name, the faces-dev JPEG it is made from, format,
# orientation tag). Stored turned, the tag brings it back upright; its source stays in the folder too,
# so that the job's face box on it can be compared with the box on the JPEG.
PHONE_PHOTOS = (
    ("person_02", "IMG_0001.HEIC", "img12.jpg", "HEIF", 6),
    ("person_04", "IMG_0002.avif", "img13.jpg", "AVIF", 8),
)

# Files that are not photos, in a person's folder: name → bytes like theirs.
STRAY_FILES = {
    "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),  # an OLE compound file, as Windows writes
    ".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(100),
    "desktop.ini": b"[.ShellClassInfo]\r\nIconResource=C:\\Windows\\System32\\imageres.dll,-3\r\n",
    "notes.txt": b"person_02: photos from the 2026 offsite\n",
    "IMG_0001.MOV": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + bytes(2000),  # the Live Photo's video
}
STRAY_FOLDER = "person_02"
# The reason each stray file is skipped with (contract.photo_files), in every message that names it.
STRAY_REASONS = {
    "Thumbs.db": "not a photo (a Windows thumbnail cache)",
    ".DS_Store": "not a photo (a macOS folder settings file)",
    "desktop.ini": "not a photo (a Windows folder settings file)",
    "notes.txt": "not a photo (a text or document file, .txt)",
    "IMG_0001.MOV": "not a photo (a video, .mov)",
}


@dataclass(frozen=True)
class PhoneFolder:
    """The folder built: where it is, the photos in it (relative paths) and the stray files'."""

    root: Path
    photos: list[str]
    stray: list[str]

    @property
    def phone_photos(self) -> dict[str, str]:
        """Relative path of each HEIC/AVIF → relative path of the JPEG it was made from."""
        return {f"{person}/{name}": f"{person}/{source}" for person, name, source, _, _ in PHONE_PHOTOS}


def phone_photo(source: Path, fmt: str, orientation: int) -> bytes:
    """The photo at `source`, stored as `fmt` (HEIF or AVIF) turned for `orientation`, tagged with it.

    The EXIF block goes as bytes: pillow-heif then writes the orientation as the HEIF's own rotation and
    mirroring (irot/imir), as an iPhone does; given an Image.Exif it writes the tag alone, which HEIF
    readers (libheif, as the HEIF format says) ignore. An AVIF keeps the tag (Pillow's plugin)."""
    with Image.open(source) as image:
        upright = image.convert("RGB")
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, fmt, exif=exif.tobytes(), quality=80)
    return buffer.getvalue()


def phone_folder(faces_dev: Path, root: Path, per_person: int = 2) -> PhoneFolder:
    """`root`/<person>/...: the first `per_person` JPEGs of each faces-dev person (linked), the sources of
    PHONE_PHOTOS among them, the HEIC and AVIF photos and, in STRAY_FOLDER, the STRAY_FILES."""
    photos: list[str] = []
    sources = {(person, source) for person, _, source, _, _ in PHONE_PHOTOS}
    for person in sorted(p for p in faces_dev.iterdir() if p.is_dir()):
        chosen = sorted(p for p in person.iterdir() if p.suffix.lower() == ".jpg")[:per_person]
        chosen += [person / source for who, source in sources if who == person.name]
        (root / person.name).mkdir(parents=True, exist_ok=True)
        for jpeg in sorted(set(chosen)):
            (root / person.name / jpeg.name).symlink_to(jpeg.resolve())
            photos.append(f"{person.name}/{jpeg.name}")
    for person, name, source, fmt, orientation in PHONE_PHOTOS:
        (root / person / name).write_bytes(phone_photo(faces_dev / person / source, fmt, orientation))
        photos.append(f"{person}/{name}")
    for name, data in STRAY_FILES.items():
        (root / STRAY_FOLDER / name).write_bytes(data)
    stray = [f"{STRAY_FOLDER}/{name}" for name in STRAY_FILES]
    return PhoneFolder(root=root, photos=sorted(photos), stray=sorted(stray))
