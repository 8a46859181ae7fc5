"""Several SageMaker instances, one job: each host embeds its shard of the photos (ShardedByS3Key) and
the first host gathers every host's outcomes and writes the outputs.

Two waits, two bounds. The rendezvous, at the start of the job (`joined_hosts`), waits for every host of
resourceconfig.json to be there: at most RENDEZVOUS_TIMEOUT (5 min; FACETRAIN_RENDEZVOUS_TIMEOUT seconds
overrides it), well below the MaxRuntime a job runs under (the template's MaxRuntimeSeconds: default
21600 s, at least 600 s; the job cannot read it), so a host that never starts ends the job with a message
naming it instead of a silent wait until SageMaker stops the job. SageMaker starts the hosts' containers
together, each once its own shard is downloaded, so they arrive within about the difference of their
download times. The gather, once every host has embedded its share, then waits as long as the slowest
host needs (GATHER_TIMEOUT, 6 h; FACETRAIN_GATHER_TIMEOUT): the hosts are known to be there, and
SageMaker ends the whole job when one of them fails, so that bound is only a last resort.

What carries the data: plain TCP from the standard library (`socket`), one connection from each other host
to the first host (MASTER_ADDR/MASTER_PORT override its address: the offline backend runs the hosts on
loopback), each message one frame: an 8-byte big-endian length, then UTF-8 JSON. At the rendezvous each
host connects (retrying until the bound: the first host may start later) and says who it is (rank, name,
the job's host list); the first host waits until every host has, so that it can name those that never
came, then tells them to go on. The connections stay open (TCP keep-alive) until the gather: each host
sends its HostShares (facetrain.host_share: JSON, embeddings as base64 bytes) and waits for the first host's
receipt; the first host reads every host at once, so a host that fails is noticed when it fails, not after
the slower ones. The payload is small (per-photo outcomes: about 3 KB each as JSON) and lives on the CPU.

This replaces torch.distributed (a TCPStore and gloo's gather_object): the image's final stage has no torch,
and gather_object unpickled whatever came off the network. JSON runs no code whoever sent it, so a stranger
reaching the port can at worst be refused or make the job fail, as before; like the TCPStore and gloo, the
connections are neither authenticated nor encrypted: the hosts talk inside SageMaker's cluster network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .host_share import HostShare, ShareUnreadable, share_from_json, share_to_json

__all__ = [
    "GATHER_TIMEOUT",
    "RENDEZVOUS_TIMEOUT",
    "Cluster",
    "GatherError",
    "HostExchange",
    "HostShare",
    "gather_timeout",
    "joined_hosts",
    "rendezvous_timeout",
]

log = logging.getLogger("facetrain")
DEFAULT_PORT = 7777
RENDEZVOUS_TIMEOUT = timedelta(minutes=5)
GATHER_TIMEOUT = timedelta(hours=6)
PROTOCOL = "facetrain-hosts/1"  # in every message: a peer of another kind or version is refused
CONNECT_RETRY_SECONDS = 0.25
GREETING_SECONDS = 10.0  # a connection that does not say who it is by then is no host of this job
MAX_CONTROL_BYTES = 64 * 1024  # greetings, the go-ahead, receipts
MAX_SHARE_BYTES = 1 << 40  # a length beyond this is no share (1 M photos is about 3 GB)
_HEADER = struct.Struct(">Q")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Cluster:
    """This host's place among the job's hosts (sagemaker_env checks that current_host is among them)."""

    hosts: tuple[str, ...]
    current_host: str

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_master(self) -> bool:
        return self.rank == 0


class GatherError(RuntimeError):
    """The hosts could not meet or exchange their outcomes."""


class _PeerClosed(ConnectionError):
    """The other end closed the connection before the whole message came."""


def _seconds(variable: str, default: timedelta) -> timedelta:
    """A wait from the environment (seconds), else the default; a value that is no positive number is a
    GatherError naming the variable."""
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise GatherError(f"{variable}={raw!r} must be a positive number of seconds")
    return timedelta(seconds=seconds)


def rendezvous_timeout() -> timedelta:
    """How long the hosts wait for each other at the start (FACETRAIN_RENDEZVOUS_TIMEOUT, seconds)."""
    return _seconds("FACETRAIN_RENDEZVOUS_TIMEOUT", RENDEZVOUS_TIMEOUT)


def gather_timeout() -> timedelta:
    """How long the hosts wait for the slowest one's share (FACETRAIN_GATHER_TIMEOUT, seconds)."""
    return _seconds("FACETRAIN_GATHER_TIMEOUT", GATHER_TIMEOUT)


def _master_port() -> int:
    raw = os.environ.get("MASTER_PORT")
    if raw is None:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise GatherError(f"MASTER_PORT={raw!r} must be a TCP port number (1 to 65535)")
    return int(raw)


# --- frames: an 8-byte length, then UTF-8 JSON; every wait ends at a deadline (time.monotonic) ---


def _send(link: socket.socket, message: object, deadline: float) -> None:
    body = json.dumps(message, separators=(",", ":")).encode("ascii")  # ensure_ascii: any str travels
    link.settimeout(max(deadline - time.monotonic(), 1e-3))
    link.sendall(_HEADER.pack(len(body)))
    link.sendall(body)


def _read_exactly(link: socket.socket, count: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    left = count
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        link.settimeout(remaining)
        chunk = link.recv(min(left, _CHUNK))
        if not chunk:
            raise _PeerClosed("the connection was closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _receive(link: socket.socket, deadline: float, limit: int) -> Any:
    """The next message (JSON data); ValueError when it is no message of this protocol."""
    (length,) = _HEADER.unpack(_read_exactly(link, _HEADER.size, deadline))
    if length > limit:
        raise ValueError(f"a message of {length} bytes (at most {limit})")
    message = json.loads(_read_exactly(link, length, deadline))
    if not isinstance(message, dict) or message.get("protocol") != PROTOCOL:
        raise ValueError(f"a message that is not {PROTOCOL}")
    return message


def _keep_alive(link: socket.socket) -> None:
    """Probe an idle connection (the hours between meeting and gather), so that a host that vanished is
    noticed in minutes and no middlebox forgets the connection."""
    link.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, option):  # Linux; elsewhere the system's defaults
            link.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _listen(address: str, port: int, backlog: int) -> socket.socket:
    """The first host's listening socket: on loopback only when the hosts meet there (offline), else on
    every interface, as the other hosts reach it by its name."""
    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return socket.create_server((address, port), backlog=backlog)
    if socket.has_dualstack_ipv6():
        with contextlib.suppress(OSError):  # IPv6 switched off on the host: IPv4 alone
            return socket.create_server(
                ("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog
            )
    return socket.create_server(("", port), backlog=backlog)


def _close(links: dict[int, socket.socket]) -> None:
    """Close every connection; shutdown first, so that a thread blocked reading one wakes up."""
    for link in links.values():
        with contextlib.suppress(OSError):
            link.shutdown(socket.SHUT_RDWR)
        link.close()


# --- the rendezvous ---


def _rendezvous_bound(wait_: timedelta) -> str:
    return (
        f"The wait is {wait_.total_seconds():g} s (FACETRAIN_RENDEZVOUS_TIMEOUT), well below the job's "
        "MaxRuntime: a host that never arrives ends the job here"
    )


def _greeting(link: socket.socket, peer: object, cluster: Cluster, deadline: float) -> int | None:
    """The rank of the host that connected, or None (logged) when it is no host of this job."""
    try:
        hello = _receive(link, deadline, MAX_CONTROL_BYTES)
        rank, host, hosts = hello.get("rank"), hello.get("host"), hello.get("hosts")
        if hosts != list(cluster.hosts):
            raise ValueError(f"a host of another job (hosts {hosts!r})")
        if not isinstance(rank, int) or not 0 < rank < cluster.size or host != cluster.hosts[rank]:
            raise ValueError(f"rank {rank!r} host {host!r}")
    except (OSError, ValueError) as exc:
        log.warning("a connection from %s is no host of this job (%s): ignored", peer, exc)
        return None
    return rank


def _meet_as_master(cluster: Cluster, address: str, port: int, wait_: timedelta) -> dict[int, socket.socket]:
    """A connection to every other host, by rank, once each has said who it is; GatherError naming the
    hosts that never did within `wait_`."""
    try:
        server = _listen(address, port, cluster.size)
    except OSError as exc:
        raise GatherError(
            f"host {cluster.current_host} (the first host) could not listen on port {port} for the other "
            f"hosts ({exc})"
        ) from None
    links: dict[int, socket.socket] = {}
    deadline = time.monotonic() + wait_.total_seconds()
    try:
        with server:
            while len(links) < cluster.size - 1:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    server.settimeout(remaining)
                    link, peer = server.accept()
                except TimeoutError:
                    missing = [host for rank, host in enumerate(cluster.hosts) if rank and rank not in links]
                    raise GatherError(
                        f"host {cluster.current_host} waited {wait_.total_seconds():g} s at {address}:{port} "
                        f"for {len(missing)} of the {cluster.size} hosts, which never arrived: "
                        f"{', '.join(missing)}; they may have failed to start or cannot reach {address}: "
                        f"see their logs. {_rendezvous_bound(wait_)}."
                    ) from None
                rank = _greeting(link, peer, cluster, min(deadline, time.monotonic() + GREETING_SECONDS))
                if rank is None or rank in links:
                    if rank is not None:
                        log.warning("host %s connected a second time: ignored", cluster.hosts[rank])
                    link.close()
                    continue
                _keep_alive(link)
                links[rank] = link
        for rank, link in links.items():
            try:
                _send(link, {"protocol": PROTOCOL, "go": True}, time.monotonic() + GREETING_SECONDS)
            except OSError as exc:
                raise GatherError(
                    f"host {cluster.current_host} met the other hosts at {address}:{port} but lost "
                    f"{cluster.hosts[rank]} before the start ({exc}); see its log"
                ) from None
    except BaseException:
        _close(links)
        raise
    return links


def _connect(cluster: Cluster, address: str, port: int, wait_: timedelta) -> socket.socket:
    """A connection to the first host, tried until `wait_` has passed (it may start after this host)."""
    deadline = time.monotonic() + wait_.total_seconds()
    while True:
        remaining = deadline - time.monotonic()
        try:
            return socket.create_connection((address, port), timeout=max(min(remaining, 10.0), 0.1))
        except OSError as exc:  # refused (not listening yet), a name not resolved yet, unreachable
            if time.monotonic() + CONNECT_RETRY_SECONDS >= deadline:
                raise GatherError(
                    f"host {cluster.current_host} could not reach the first host {cluster.hosts[0]} at "
                    f"{address}:{port} within {wait_.total_seconds():g} s ({exc}); it may have failed to "
                    f"start: see its log. {_rendezvous_bound(wait_)}."
                ) from None
        time.sleep(CONNECT_RETRY_SECONDS)


def _meet_as_host(cluster: Cluster, address: str, port: int, wait_: timedelta) -> socket.socket:
    """The connection to the first host, once it says every host is there."""
    link = _connect(cluster, address, port, wait_)
    hello = {"protocol": PROTOCOL, "rank": cluster.rank, "host": cluster.current_host, "hosts": cluster.hosts}
    try:
        _keep_alive(link)
        _send(link, hello, time.monotonic() + wait_.total_seconds())
        # The first host waits for the last host at most `wait_` from its own start, which came before
        # this connection: `wait_` more is enough; twice it leaves room for a slow greeting.
        _receive(link, time.monotonic() + 2 * wait_.total_seconds(), MAX_CONTROL_BYTES)
    except (OSError, ValueError) as exc:
        link.close()
        raise GatherError(
            f"host {cluster.current_host} reached the first host {cluster.hosts[0]} at {address}:{port}, "
            f"but the meeting did not complete ({exc}); its log says why (it names the hosts that never "
            f"arrived). {_rendezvous_bound(wait_)}."
        ) from None
    return link


# --- the gather ---


def _receive_share(
    cluster: Cluster, rank: int, link: socket.socket, deadline: float, where: str, seconds: float
) -> list[HostShare]:
    """Host `rank`'s shares, acknowledged; GatherError naming the host when they do not come whole."""
    host = cluster.hosts[rank]
    try:
        message = _receive(link, deadline, MAX_SHARE_BYTES)
        items = message.get("shares")
        if not isinstance(items, list):
            raise ShareUnreadable("shares is missing")
        shares = [share_from_json(item, f"shares[{i}]") for i, item in enumerate(items)]
        _send(link, {"protocol": PROTOCOL, "received": len(shares)}, deadline)
    except ShareUnreadable as exc:
        raise GatherError(
            f"host {cluster.current_host} cannot read the outcomes host {host} sent ({exc}); do all hosts "
            "run the same image?"
        ) from None
    except TimeoutError:
        raise GatherError(
            f"host {cluster.current_host} waited {seconds:g} s (FACETRAIN_GATHER_TIMEOUT)"
            f" for host {host}'s outcomes at {where}; see its log"
        ) from None
    except (OSError, ValueError) as exc:
        raise GatherError(
            f"host {cluster.current_host} could not receive host {host}'s outcomes at {where} ({exc}); "
            "it may have failed: see its log"
        ) from None
    return shares


class HostExchange:
    """The hosts, met: `gather_to_master` once, when this host's share is ready."""

    def __init__(self, cluster: Cluster, where: str, links: dict[int, socket.socket] | None = None) -> None:
        self.cluster = cluster
        self.where = where
        # The first host: a connection to each other host, by rank; another host: {0: the first host}.
        self.links = links or {}

    def gather_to_master(self, outcomes: list[HostShare]) -> list[HostShare] | None:
        """Every host's shares on the master (flattened, in host order); None on the other hosts. Waits
        at most gather_timeout() for the slowest host; the connections are closed afterwards."""
        if self.cluster.size == 1:
            return outcomes
        seconds = gather_timeout().total_seconds()
        deadline = time.monotonic() + seconds
        try:
            if not self.cluster.is_master:
                self._hand_over(outcomes, deadline)
                return None
            return [*outcomes, *self._collect(deadline, seconds)]
        finally:
            _close(self.links)

    def _hand_over(self, shares: list[HostShare], deadline: float) -> None:
        link = self.links[0]
        message = {"protocol": PROTOCOL, "shares": [share_to_json(share) for share in shares]}
        try:
            _send(link, message, deadline)
            _receive(link, deadline, MAX_CONTROL_BYTES)  # the receipt: the first host has them all
        except (OSError, ValueError) as exc:
            raise GatherError(
                f"host {self.cluster.current_host} could not hand its outcomes to the first host "
                f"{self.cluster.hosts[0]} at {self.where} ({exc}); it may have failed first: see its log"
            ) from None

    def _collect(self, deadline: float, seconds: float) -> list[HostShare]:
        """Every other host's shares, in host order; read all at once (one thread each: most of the time
        is spent waiting), so the first failure ends the wait."""
        with ThreadPoolExecutor(max_workers=len(self.links), thread_name_prefix="gather") as pool:
            futures = {
                rank: pool.submit(_receive_share, self.cluster, rank, link, deadline, self.where, seconds)
                for rank, link in sorted(self.links.items())
            }
            done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                _close(self.links)  # wakes the threads still reading
                raise failed.exception()  # type: ignore[misc]
        return [share for rank in sorted(futures) for share in futures[rank].result()]


@contextmanager
def joined_hosts(cluster: Cluster) -> Iterator[HostExchange]:
    """Meet the other hosts (at most rendezvous_timeout(); GatherError naming the missing ones), then
    yield the exchange that gathers the shares (waiting at most gather_timeout() for the slowest). One
    host: no meeting at all. The connections are closed on the way out, whatever happens inside."""
    address = os.environ.get("MASTER_ADDR", cluster.hosts[0])
    port = _master_port()
    where = f"{address}:{port}"
    if cluster.size == 1:
        yield HostExchange(cluster, where)
        return
    wait_ = rendezvous_timeout()
    gather_timeout()  # read now: a bad value fails before any waiting
    log.info(
        "host %s (rank %d of %d): meeting the other hosts at %s (waiting at most %g s)",
        cluster.current_host,
        cluster.rank,
        cluster.size,
        where,
        wait_.total_seconds(),
    )
    if cluster.is_master:
        links = _meet_as_master(cluster, address, port, wait_)
    else:
        links = {0: _meet_as_host(cluster, address, port, wait_)}
    log.info("host %s: all %d hosts are here", cluster.current_host, cluster.size)
    try:
        yield HostExchange(cluster, where, links)
    finally:
        _close(links)
