"""The export folder's manifest: which ONNX file plays which role, and its sha256.

A folder written by `facetrain.inference.export` holds some of pnet.onnx, rnet.onnx, onet.onnx (MTCNN) and
one InceptionResnetV1 file, and manifest.json, which records each file's role, name and sha256, and what
the files were made from. The cache (`onnx_files`) keeps MTCNN's three and each weights' InceptionResnetV1
in folders of their own; `export OUT_DIR` writes all four into one. Standard library only: read by the job
(no torch) and written by the exporter.
"""

from __future__ import annotations

import json
from pathlib import Path

from .model_files import ModelFile, WeightsError, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
MTCNN_ROLES = ("pnet", "rnet", "onet")
FACENET_ROLE = "facenet"
ROLES = (*MTCNN_ROLES, FACENET_ROLE)
# The exporter replaces a cache folder that does not verify (export.publish_folder).
EXPORT_HINT = "re-export them: python -m facetrain.inference.export --cache [DIR] [--weights ...]"


def read_manifest(folder: Path, roles: tuple[str, ...] = ROLES) -> tuple[ModelFile, ...]:
    """The folder's model files of `roles`, each checked against the sha256 its manifest records;
    WeightsError naming the file and the fix when the manifest or a file is missing, unreadable or
    changed."""
    path = folder / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = {entry["role"]: entry for entry in document["files"]}
    except FileNotFoundError:
        raise WeightsError(f"no ONNX models in {folder}: {MANIFEST} is missing; {EXPORT_HINT}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path} is not an export manifest ({exc}); {EXPORT_HINT}") from None
    files = []
    for role in roles:
        entry = entries.get(role)
        if entry is None:
            raise WeightsError(f"{path} names no {role} model; {EXPORT_HINT}")
        name = str(entry.get("name", ""))
        if not name or Path(name).name != name:
            raise WeightsError(f"{path} gives the {role} model as {name!r}, not a file name; {EXPORT_HINT}")
        recorded = entry.get("sha256")
        if not isinstance(recorded, str):
            raise WeightsError(f"{path} records no sha256 for the {role} model; {EXPORT_HINT}")
        file = folder / name
        if not file.is_file():
            raise WeightsError(f"the {role} model {file} is missing; {EXPORT_HINT}")
        digest = sha256_file(file)
        if digest != recorded:
            raise WeightsError(
                f"the {role} model {file} is not the file {MANIFEST} records (sha256 {digest[:12]}…, "
                f"expected {recorded[:12]}…); {EXPORT_HINT}"
            )
        files.append(ModelFile(role, file, digest))
    return tuple(files)
