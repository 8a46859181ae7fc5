"""Which files of a photos folder are photos: the one rule that validate (facetrain_lambdas.dataset), the
training job (facetrain.photos.list_channel) and `facetrain run`'s upload (facetrain_offline.photo_upload)
apply, so that they agree on what is read and what is skipped.

Three kinds of file, by name alone (nothing is opened):
- a photo extension (PHOTO_EXTENSIONS): read; the job decodes it by content, so a file that is not an
  image after all gets its rejected.csv row (`not_an_image`), naming it.
- a file known not to be a photo (NOT_PHOTO_NAMES, NOT_PHOTO_EXTENSIONS: what operating systems, phones and
  people leave in photo folders: Thumbs.db, .DS_Store, desktop.ini, text, videos, sidecars): skipped, with
  the reason `not_photo_reason` gives, never a refusal of the run.
- any other extension, or none: read as a photo too. The job decodes by content, never by extension, and
  photos come with names no list foresees (`IMG_0001` without extension, `.jfif`, `.jpg_large`), so
  skipping them would drop a person's photo in silence; one that is not an image is named in rejected.csv
  with why. validate warns about it (`unknown_extension_warning`).

Standard-library only, like the rest of facetrain.contract, which the Lambdas' layer ships.
"""

from __future__ import annotations

NOT_A_PHOTO = "not_a_photo"  # the reason code of a skipped file (the job's rejected.csv)

# What the job decodes: Pillow's formats, HEIC/HEIF through pillow-heif (iPhones' default format), AVIF
# (Pillow's own plugin). Lower case; names are compared lower-cased.
PHOTO_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".heic",
    ".heif",
    ".hif",
    ".avif",
)
PHOTO_FORMATS = "JPEG, PNG, HEIC/HEIF, AVIF, WebP, TIFF, BMP or GIF"  # in words, for messages

# Whole file names (lower-cased) that are never photos: folder settings and thumbnail caches.
NOT_PHOTO_NAMES = {
    "thumbs.db": "a Windows thumbnail cache",
    "ehthumbs.db": "a Windows thumbnail cache",
    "desktop.ini": "a Windows folder settings file",
    ".ds_store": "a macOS folder settings file",
    "icon\r": "a macOS folder icon",
    ".picasa.ini": "a Picasa settings file",
    "picasa.ini": "a Picasa settings file",
}

_TEXT = "a text or document file"
_VIDEO = "a video"
_SIDECAR = "a sidecar file of a photo's edits or metadata"
_OTHER = "not an image file"
NOT_PHOTO_EXTENSIONS = {
    **dict.fromkeys((".txt", ".md", ".rtf", ".doc", ".docx", ".odt", ".pdf", ".csv", ".json"), _TEXT),
    **dict.fromkeys((".xml", ".html", ".htm", ".log", ".pages", ".xls", ".xlsx"), _TEXT),
    **dict.fromkeys((".mov", ".mp4", ".m4v", ".avi", ".mkv", ".webm", ".3gp", ".wmv", ".mts"), _VIDEO),
    **dict.fromkeys((".m2ts", ".mpg", ".mpeg", ".flv"), _VIDEO),
    **dict.fromkeys((".aae", ".xmp", ".thm", ".dop", ".pp3"), _SIDECAR),
    **dict.fromkeys((".db", ".ini", ".lnk", ".url", ".zip", ".7z", ".rar", ".tar", ".gz"), _OTHER),
    **dict.fromkeys((".mp3", ".wav", ".m4a", ".aac", ".exe", ".py", ".sh"), _OTHER),
}


def extension(name: str) -> str:
    """The file name's extension, lower-cased with its dot (`.heic`), or '' when it has none (a name
    starting with its only dot, `.DS_Store`, has none)."""
    stem, dot, suffix = name.rpartition(".")
    return f".{suffix.lower()}" if dot and stem else ""


def not_photo_reason(name: str) -> str | None:
    """Why a file of this name is skipped, in words (`not a photo (a video, .mov): skipped; …`), or None
    when it is read as a photo (module docstring)."""
    kind = NOT_PHOTO_NAMES.get(name.lower())
    suffix = extension(name)
    if kind is None:
        kind = NOT_PHOTO_EXTENSIONS.get(suffix)
        if kind is None:
            return None
        kind = f"{kind}, {suffix}"
    return f"not a photo ({kind}): skipped; photos are read as {PHOTO_FORMATS}"


def unknown_extension_warning(name: str) -> str | None:
    """For a file read as a photo without a photo extension, what the person is told; None otherwise."""
    suffix = extension(name)
    if suffix in PHOTO_EXTENSIONS or not_photo_reason(name) is not None:
        return None
    return (
        f"{'no extension' if not suffix else f'extension {suffix}'} is not a photo format's: the training "
        "job reads it by its content and, when it is not an image, lists it in rejected.csv "
        f"(not_an_image); photos are read as {PHOTO_FORMATS}"
    )
