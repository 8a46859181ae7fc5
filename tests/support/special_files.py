"""Entries that are not regular files, made for real at test time (what the job and the upload must name
and never open)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def make_socket(path: Path) -> None:
    """A Unix-domain socket at `path` (left bound to nothing once made)."""
    here = Path.cwd()
    os.chdir(path.parent)  # an AF_UNIX path is limited to 107 bytes: bind by the short relative name
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path.name)
    finally:
        os.chdir(here)
