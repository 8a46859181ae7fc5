"""How the hosts of a multi-host job exchange their outcomes (facetrain.distributed over plain TCP, the shares
as JSON: facetrain.host_share): every outcome arrives whole, what is not a share is refused without being
run, strangers on the port do not stop the meeting, and a host that fails is noticed when it fails."""

from __future__ import annotations

import json
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from facetrain.distributed import PROTOCOL, Cluster, GatherError, HostShare, joined_hosts
from facetrain.host_share import ShareUnreadable, share_from_json, share_to_json
from facetrain.inference.faces import DetectedFace
from facetrain.photos import PhotoRef, Rejection, SkippedFile
from facetrain.pipeline import Accepted, Rejected, Unforeseen

HOSTS = ("algo-1", "algo-2")
NOT_UTF8 = "caf\udce9"  # a folder name that is not UTF-8 (os.fsdecode's surrogate escape)


def _photo(identity: str, name: str) -> PhotoRef:
    return PhotoRef(identity, f"{identity}/{name}", Path("/opt/ml/input/data/face_imgs") / identity / name)


def _share(seed: int = 0) -> HostShare:
    rng = np.random.default_rng(seed)
    return HostShare(
        outcomes=[
            Accepted(
                _photo("Zoë 李", "1.jpg"),
                "a" * 64,
                DetectedFace(box=(0.1 + 1e-9, 2 / 3, 1e300, -0.0), probability=0.999999940395, faces_found=2),
                rng.standard_normal(512).astype(np.float32),
            ),
            Accepted(_photo("dlib", "2.jpg"), "b" * 64, DetectedFace((1, 2, 3, 4), 1.0, 1), rng.random(128)),
            Rejected(_photo(NOT_UTF8, "3.jpg"), "c" * 64, Rejection("no_face", "no face was found")),
            Rejected(_photo("p", "4.jpg"), None, Unforeseen("detect_failed", "detection failed (boom)")),
            SkippedFile(PhotoRef("", "Thumbs.db", Path("/x/Thumbs.db")), "not a photo (Windows thumbnails)"),
        ],
        stray_files=["group.jpg", NOT_UTF8 + ".jpg"],
        computed=2,
        reused=1,
        photos=4,
        loop_seconds=1.2345678901234567,
        examined=3,
    )


def _over_the_wire(share: HostShare) -> HostShare:
    return share_from_json(json.loads(json.dumps(share_to_json(share)).encode("ascii")))


def test_every_outcome_kind_arrives_whole_and_bit_exact():
    sent = _share()
    received = _over_the_wire(sent)

    assert (received.stray_files, received.computed, received.reused, received.photos, received.examined) == (
        sent.stray_files,
        sent.computed,
        sent.reused,
        sent.photos,
        sent.examined,
    )
    assert received.loop_seconds == sent.loop_seconds
    assert [type(o) for o in received.outcomes] == [type(o) for o in sent.outcomes]
    for got, want in zip(received.outcomes, sent.outcomes, strict=True):
        assert got.photo == want.photo  # identity, key and path, names that are not UTF-8 included
        if isinstance(want, Accepted):
            assert (got.sha256, got.face) == (want.sha256, want.face)
            assert got.embedding.dtype == want.embedding.dtype and got.embedding.shape == want.embedding.shape
            assert got.embedding.tobytes() == want.embedding.tobytes()
            assert got.embedding.flags.writeable
        else:
            assert got == want
    assert type(received.outcomes[3].rejection) is Unforeseen  # never checkpointed: the kind matters
    assert type(received.outcomes[2].rejection) is Rejection


def _broken(change) -> dict:
    data = share_to_json(_share())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.pop("computed"), "share.computed is missing"),
        (lambda d: d.update(examined=True), "share.examined is a bool, not a int"),
        (lambda d: d.update(reused=-1), "share.reused is negative"),
        (lambda d: d["outcomes"][0].update(kind="pickled"), "share.outcomes[0].kind is 'pickled'"),
        (
            lambda d: d["outcomes"][0]["embedding"].update(dtype="|O"),
            "share.outcomes[0].embedding.dtype is '|O'",
        ),
        (
            lambda d: d["outcomes"][1]["embedding"].update(shape=[127]),
            "share.outcomes[1].embedding.data holds",
        ),
        (
            lambda d: d["outcomes"][0]["embedding"].update(data="%%"),
            "share.outcomes[0].embedding.data is not",
        ),
        (lambda d: d["outcomes"][0].update(box=[1, 2, 3]), "share.outcomes[0].box is not 4 numbers"),
        (lambda d: d["outcomes"][2]["photo"].pop("path"), "share.outcomes[2].photo.path is missing"),
        (lambda d: d["stray_files"].append(7), "share.stray_files[2] is not a string"),
    ],
)
def test_a_share_not_in_the_form_is_refused_naming_the_field(change, named):
    with pytest.raises(ShareUnreadable) as refused:
        share_from_json(_broken(change))
    assert str(refused.value).startswith(named), refused.value


@pytest.fixture
def loopback(monkeypatch) -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("FACETRAIN_RENDEZVOUS_TIMEOUT", "20")
    monkeypatch.setenv("FACETRAIN_GATHER_TIMEOUT", "60")
    return port


def _in_thread(target) -> tuple[threading.Thread, dict]:
    """Run `target()` in a thread; its result or exception lands in the dict."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _host(name: str, share: HostShare, fails_after: float | None = None, hosts: tuple[str, ...] = HOSTS):
    """One host's job: meet, then gather `share`, or fail `fails_after` seconds after the meeting."""

    def run():
        with joined_hosts(Cluster(hosts, name)) as exchange:
            if fails_after is not None:
                time.sleep(fails_after)
                raise RuntimeError(f"{name} failed while embedding")
            return exchange.gather_to_master([share])

    return run


def test_the_hosts_meet_and_the_first_gets_every_share_in_host_order(loopback):
    three = ("algo-1", "algo-2", "algo-3")
    others = [_in_thread(_host(f"algo-{n}", _share(n), hosts=three)) for n in (3, 2)]  # the last comes first
    gathered = _host("algo-1", _share(1), hosts=three)()
    for thread, result in others:
        thread.join(30)
        assert result == {"result": None}  # the other hosts hand over and write nothing
    assert [s.outcomes[0].embedding.tobytes() for s in gathered] == [
        _share(seed).outcomes[0].embedding.tobytes() for seed in (1, 2, 3)
    ]


def _connect_when_listening(port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the first host never listened"
            time.sleep(0.05)


def _frame(message: bytes) -> bytes:
    return struct.pack(">Q", len(message)) + message


@pytest.mark.parametrize(
    "stranger",
    [
        b"",  # connects and says nothing
        b"GET / HTTP/1.1\r\nHost: algo-1\r\n\r\n",  # a scanner
        _frame(json.dumps({"protocol": PROTOCOL, "rank": 1, "host": "algo-2", "hosts": ["x", "y"]}).encode()),
    ],
)
def test_a_stranger_on_the_port_does_not_stop_the_meeting(loopback, stranger, caplog, monkeypatch):
    monkeypatch.setattr("facetrain.distributed.GREETING_SECONDS", 1.0)
    first, first_result = _in_thread(_host("algo-1", _share(1)))
    with _connect_when_listening(loopback) as intruder:
        intruder.sendall(stranger)
        time.sleep(0.2)
        second, second_result = _in_thread(_host("algo-2", _share(2)))
        first.join(30)
        second.join(30)
    assert "error" not in first_result and "error" not in second_result, (first_result, second_result)
    assert len(first_result["result"]) == 2
    assert "is no host of this job" in caplog.text


def test_a_pickle_sent_as_a_share_is_refused_and_never_run(loopback, tmp_path):
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    first, first_result = _in_thread(_host("algo-1", _share(1)))
    hello = {"protocol": PROTOCOL, "rank": 1, "host": "algo-2", "hosts": list(HOSTS)}
    with _connect_when_listening(loopback) as peer:
        peer.sendall(_frame(json.dumps(hello).encode()))
        peer.recv(1024)  # the go-ahead
        peer.sendall(_frame(pickle.dumps(Payload())))
        first.join(30)
    assert isinstance(first_result.get("error"), GatherError), first_result
    assert "could not receive host algo-2's outcomes" in str(first_result["error"])
    assert not ran.exists()


def test_a_host_that_fails_after_the_meeting_is_named_at_once_not_after_the_gather_bound(loopback):
    second, second_result = _in_thread(_host("algo-2", _share(2), fails_after=0))
    started = time.monotonic()
    with pytest.raises(GatherError) as failed:
        _host("algo-1", _share(1))()
    assert time.monotonic() - started < 15  # the gather bound is 60 s
    assert str(failed.value).startswith("host algo-1 could not receive host algo-2's outcomes at 127.0.0.1:")
    assert "see its log" in str(failed.value)
    second.join(30)
    assert "failed while embedding" in str(second_result["error"])


def test_a_first_host_that_fails_after_the_meeting_is_named_by_the_others_at_once(loopback):
    second, second_result = _in_thread(_host("algo-2", _share(2)))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="algo-1 failed while embedding"):
        _host("algo-1", _share(1), fails_after=1.0)()  # algo-2's share has arrived, unread
    second.join(30)
    assert time.monotonic() - started < 15
    error = second_result.get("error")
    assert isinstance(error, GatherError), second_result
    assert str(error).startswith(
        "host algo-2 could not hand its outcomes to the first host algo-1 at 127.0.0.1:"
    )


def test_the_hosts_exchange_imports_no_torch():
    """The training image's final stage has no torch: meeting and gathering must not need it."""
    probe = (
        "import sys, facetrain.distributed, facetrain.host_share; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'facenet_pytorch'}))"
    )
    found = subprocess.run(  # this interpreter, our own one-liner
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
