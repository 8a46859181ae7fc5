"""Photo sets the benchmarks make at run time from ../shared/data (never stored in the repository).

`phone_size_copies`: every photo of the given folders upscaled (Lanczos, JPEG quality 90) so that its longer
side runs evenly from 3000 to 4500 px — the size of phone photos, which the shared photos (330-4352 px,
most under 2100) are not.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

LONG_SIDES = (3000, 4500)


def photos_of(folder: Path) -> list[Path]:
    """The `<identity>/<photo>` files of a folder, sorted."""
    return sorted(p for p in folder.glob("*/*") if p.is_file() and not p.name.startswith("."))


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
