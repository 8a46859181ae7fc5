"""Where the named InceptionResnetV1 weights live, without importing torch (the offline CLI checks it)."""

from __future__ import annotations

import os
from pathlib import Path

# facenet-pytorch names its cached downloads after their release URL.
WEIGHT_FILES = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}


def torch_home() -> Path:
    """facenet-pytorch's cache root ($TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", default)).expanduser()


def cached_weights(name: str) -> Path:
    """The file facenet-pytorch would cache the named weights in."""
    return torch_home() / "checkpoints" / WEIGHT_FILES[name]
