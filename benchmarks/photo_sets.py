"""Photo sets the benchmarks make at run time from ../shared/data (never stored in the repository).

`real_size_set`: every photo under ../shared/data at its own size (faces-dev, faces-small, edge-cases),
linked into <identity>/<photo> folders. `phone_size_copies`: every photo of the given folders upscaled
(Lanczos, JPEG quality 90) so that its longer side runs evenly from 3000 to 4500 px — the size of phone
photos, which the shared photos (most under 2100 px) are not.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

LONG_SIDES = (3000, 4500)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp")


def photos_of(folder: Path) -> list[Path]:
    """The `<identity>/<photo>` files of a folder, sorted."""
    return sorted(p for p in folder.glob("*/*") if p.is_file() and not p.name.startswith("."))


def real_photos(data: Path) -> list[Path]:
    """Every photo under `data`, at any depth (README and hidden files left out), sorted."""
    return sorted(
        p
        for p in data.rglob("*")
        if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".")
    )


def real_size_set(data: Path, target: Path, limit: int | None = None) -> Path:
    """Link every photo under `data` (at most `limit`), unchanged, as target/<identity>/<photo>: the identity
    is the photo's own folder (faces-dev/person_02, faces-small/kate_siegel; edge-cases/multiface.jpg goes to
    edge-cases). Links, not copies: the originals are read, nothing is stored twice."""
    photos = real_photos(data)[:limit]
    if not photos:
        raise SystemExit(f"no photos under {data}: it should hold <set>/<identity>/<photo> files")
    for photo in photos:
        destination = target / photo.parent.name / photo.name
        if destination.exists():  # two sets with an identity folder of the same name: keep both photos
            destination = target / photo.parent.name / f"{photo.parent.parent.name}-{photo.name}"
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.symlink_to(photo.resolve())
    return target


def long_sides(folder: Path) -> tuple[int, int]:
    """The smallest and largest longer side (px) of the `<identity>/<photo>` files of a folder."""
    sides = []
    for photo in photos_of(folder):
        with Image.open(photo) as opened:
            sides.append(max(opened.size))
    return min(sides), max(sides)


def phone_size_copies(folders: list[Path], target: Path, limit: int | None = None) -> Path:
    """Write upscaled copies of the folders' photos (at most `limit`) to target/<identity>/<photo>."""
    photos = [photo for folder in folders for photo in photos_of(folder)][:limit]
    low, high = LONG_SIDES
    for index, photo in enumerate(photos):
        side = low + (high - low) * index // max(1, len(photos) - 1)
        with Image.open(photo) as opened:
            image = opened.convert("RGB")
        factor = side / max(image.size)
        image = image.resize(
            (round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS
        )
        destination = target / photo.parent.name / photo.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        image.save(destination, quality=90)
    return target
