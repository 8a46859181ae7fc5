"""The export folder's manifest: which ONNX file plays which role, and its sha256.

A folder written by `facetrain.inference.export` holds pnet.onnx, rnet.onnx, onet.onnx, one
InceptionResnetV1 file and manifest.json, which records each file's role, name and sha256, and what the
files were made from. Standard library only: read by the job (no torch) and written by the exporter.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..model_files import ModelFile, WeightsError, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
ROLES = ("pnet", "rnet", "onet", "facenet")
EXPORT_HINT = "re-export them: python -m facetrain.inference.export FOLDER [--weights ...]"


def read_manifest(folder: Path) -> tuple[ModelFile, ...]:
    """The folder's model files by role, each checked against the sha256 its manifest records; WeightsError
    naming the file and the fix when the manifest or a file is missing, unreadable or changed."""
    path = folder / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = {entry["role"]: entry for entry in document["files"]}
    except FileNotFoundError:
        raise WeightsError(f"no ONNX models in {folder}: {MANIFEST} is missing; {EXPORT_HINT}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path} is not an export manifest ({exc}); {EXPORT_HINT}") from None
    files = []
    for role in ROLES:
        entry = entries.get(role)
        if entry is None:
            raise WeightsError(f"{path} names no {role} model; {EXPORT_HINT}")
        name = str(entry.get("name", ""))
        if not name or Path(name).name != name:
            raise WeightsError(f"{path} gives the {role} model as {name!r}, not a file name; {EXPORT_HINT}")
        file = folder / name
        if not file.is_file():
            raise WeightsError(f"the {role} model {file} is missing; {EXPORT_HINT}")
        digest = sha256_file(file)
        if digest != entry["sha256"]:
            raise WeightsError(
                f"the {role} model {file} is not the file {MANIFEST} records (sha256 {digest[:12]}…, "
                f"expected {str(entry['sha256'])[:12]}…); {EXPORT_HINT}"
            )
        files.append(ModelFile(role, file, digest))
    return tuple(files)
