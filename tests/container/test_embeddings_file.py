"""facetrain.contract.embeddings_file: the pickle is read with a restricted unpickler (no torch)."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from facetrain.contract.embeddings_file import FORMAT, EmbeddingsFileError, dump_embeddings, load_embeddings


def record(identity: str = "alice", embedding: object = None) -> dict[str, object]:
    return {
        "identity": identity,
        "key": f"{identity}/1.jpg",
        "sha256": "ab" * 32,
        "box": [1.0, 2.0, 30.5, 40.25],
        "probability": 0.999,
        "faces_found": 1,
        "embedding": np.arange(512, dtype=np.float32) / 512 if embedding is None else embedding,
    }


def dumped(metadata: dict[str, object], records: list[dict[str, object]]) -> bytes:
    buffer = io.BytesIO()
    dump_embeddings(metadata, records, buffer)
    return buffer.getvalue()


def test_round_trip(tmp_path):
    records = [record("alice"), record("名前 O'Brien")]
    data = dumped({"weights": "none", "not_for_production": True}, records)
    (tmp_path / "e.pkl").write_bytes(data)
    for source in (data, tmp_path / "e.pkl"):
        payload = load_embeddings(source)
        assert payload["format"] == FORMAT
        assert payload["metadata"] == {"weights": "none", "not_for_production": True}
        assert [r["identity"] for r in payload["records"]] == ["alice", "名前 O'Brien"]
        assert np.array_equal(payload["records"][0]["embedding"], records[0]["embedding"])
        assert payload["records"][0]["embedding"].dtype == np.float32


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_tampered_pickle_referencing_os_system_is_refused(tmp_path, monkeypatch, protocol):
    monkeypatch.chdir(tmp_path)
    payload = {"format": FORMAT, "version": 1, "metadata": {}, "records": [{**record(), "box": _Exploit()}]}
    data = pickle.dumps(payload, protocol=protocol)
    assert b"system" in data
    with pytest.raises(EmbeddingsFileError, match=r"refers to (posix|os|nt)\.system, which is not allowed"):
        load_embeddings(data)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"format": FORMAT, "version": 1, "metadata": {}, "records": [{**record(), "embedding": eval}]},
        {"format": FORMAT, "version": 1, "metadata": {"x": io.BytesIO}, "records": []},
    ],
)
def test_other_globals_are_refused(payload):
    with pytest.raises(EmbeddingsFileError, match="not allowed"):
        load_embeddings(pickle.dumps(payload))


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([1, 2, 3], "is not a facetrain.saved_embeddings file"),
        ({"format": "other", "records": []}, "is not a facetrain.saved_embeddings file"),
        ({"format": FORMAT, "metadata": {}}, "lacks its records list or metadata"),
        ({"format": FORMAT, "records": [], "metadata": None}, "lacks its records list or metadata"),
        ({"format": FORMAT, "metadata": {}, "records": [{"identity": "a"}]}, "record 0 lacks one of"),
        (
            {
                "format": FORMAT,
                "metadata": {},
                "records": [record(embedding=np.zeros(512, dtype=np.float64))],
            },
            "record 0: embedding is not a 1-D float32 array",
        ),
        (
            {
                "format": FORMAT,
                "metadata": {},
                "records": [record(embedding=np.zeros((2, 256), dtype=np.float32))],
            },
            "record 0: embedding is not a 1-D float32 array",
        ),
        ({"format": FORMAT, "metadata": {}, "records": [record(embedding=[0.0] * 512)]}, "not a 1-D float32"),
    ],
)
def test_foreign_shapes_are_refused(payload, words):
    with pytest.raises(EmbeddingsFileError, match=words):
        load_embeddings(pickle.dumps(payload))


def test_truncated_and_garbage_files_are_refused():
    data = dumped({}, [record()])
    with pytest.raises(EmbeddingsFileError, match="cannot be read"):
        load_embeddings(data[: len(data) // 2])
    with pytest.raises(EmbeddingsFileError, match="cannot be read"):
        load_embeddings(b"not a pickle at all")
