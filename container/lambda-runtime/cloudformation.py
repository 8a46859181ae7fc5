"""CloudFormation's end of a custom resource under `sam local invoke`: an HTTPS server standing in for the
pre-signed S3 URL (the event's ResponseURL) where CloudFormation waits for the function's answer.

Why it is needed: CleanupFunction answers through crhelper, which PUTs the response to ResponseURL
(crhelper/utils.py `_send_response`) and, when that fails, tries again 5 times 2 s apart, then again after
5 s, for ever: without an answer the invocation lasts until the function's 900 s timeout. There is no
network here, so the sample event's amazonaws.com URL is replaced by this server's (`rewrite_event`).

Why HTTPS with a certificate made per run: crhelper sends with http.client.HTTPSConnection and
ssl.create_default_context(), i.e. it verifies the certificate, host name included, against OpenSSL's
default trust store (the handler passes no ssl_verify; requests and REQUESTS_CA_BUNDLE play no part).
OpenSSL reads that store from SSL_CERT_FILE when it is set, so a CA made here (with `cryptography`, a
dependency of moto) signs a certificate for the podman bridge's gateway address, and its file reaches the
function containers as a read-only mount named by SSL_CERT_FILE: both through the podman service's
containers.conf ([containers] volumes, env; services.podman_service), as AWS_ENDPOINT_URL does, never in
the image. The containers then trust only this CA by default; boto3 keeps its own bundle and talks plain
http to moto.

Not moto's: moto's CloudFormation sends its custom-resource requests itself and does not serve a
ResponseURL to PUT to. The server answers every PUT 200 with an empty body, as S3 does, and keeps the
bodies, one list per URL path.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import services

# Where the CA file is mounted in the function containers (SSL_CERT_FILE names it).
CONTAINER_CA_FILE = "/etc/facetrain-local/cloudformation-ca.pem"
CA_NAME = "facetrain local CloudFormation CA"
log = logging.getLogger(__name__)


def _certificates(address: str, folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for the IP address it signs: (ca.pem, server.pem, server-key.pem).
    The extensions are those Python 3.13's default context (VERIFY_X509_STRICT) requires."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def builder(subject: str, public_key: Any) -> x509.CertificateBuilder:
        return x509.CertificateBuilder(
            subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]),
            issuer_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)]),
            public_key=public_key,
            serial_number=x509.random_serial_number(),
            not_valid_before=now - datetime.timedelta(minutes=5),
            not_valid_after=now + datetime.timedelta(days=1),
        )

    def key_usage(*, certificates: bool) -> x509.KeyUsage:
        signs = dict.fromkeys(("key_cert_sign", "crl_sign"), certificates)
        unused = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
        return x509.KeyUsage(
            digital_signature=not certificates,
            **signs,
            **dict.fromkeys(unused, False),
            encipher_only=False,
            decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_key_id = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        builder(CA_NAME, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(certificates=True), critical=True)
        .add_extension(ca_key_id, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder(address, server_key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class Responder:
    """The running server: URLs to hand out as ResponseURL, and the bodies PUT to them."""

    def __init__(self, ca_file: Path) -> None:
        self.base_url = ""  # https://<gateway>:<port>, for the function containers, once it listens
        self.ca_file = ca_file
        self._bodies: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def response_url(self) -> str:
        """A new ResponseURL, as CloudFormation makes one per request."""
        return f"{self.base_url}/{uuid.uuid4().hex}"

    def received(self, response_url: str) -> list[Any]:
        """The bodies PUT to response_url so far (JSON; the raw text when it is not JSON)."""
        with self._lock:
            return list(self._bodies.get(response_url.removeprefix(self.base_url), ()))

    def record(self, path: str, body: bytes) -> None:
        """Keep a body PUT to path."""
        try:
            value: Any = json.loads(body)
        except ValueError:
            value = body.decode(errors="replace")
        with self._lock:
            self._bodies.setdefault(path, []).append(value)


class _PutHandler(BaseHTTPRequestHandler):
    server: _TlsServer

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.responder.record(self.path, body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, message: str, *args: Any) -> None:
        log.debug(message, *args)


class _TlsServer(socketserver.ThreadingTCPServer):
    """TLS per connection, in the connection's thread (a client that never completes its handshake
    holds up only its own thread). socketserver rather than http.server.HTTPServer: the latter resolves
    its address's host name (getfqdn), which can wait on DNS that is not there."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, context: ssl.SSLContext, responder: Responder) -> None:
        self.context = context
        self.responder = responder
        super().__init__((address, 0), _PutHandler, bind_and_activate=False)
        # The bridge interface exists only while a container uses it (see services.py).
        self.socket.setsockopt(socket.IPPROTO_IP, services.IP_FREEBIND, 1)
        self.server_bind()
        self.server_activate()

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        log.warning("CloudFormation stand-in: a connection from %s failed: %s", client_address[0], error)


@contextlib.contextmanager
def responder(address: str) -> Iterator[Responder]:
    """The HTTPS server on address (the bridge gateway), a free port, with its CA file."""
    with tempfile.TemporaryDirectory(prefix="facetrain-cloudformation-") as scratch:
        ca_file, certificate, key = _certificates(address, Path(scratch))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, key)
        answering = Responder(ca_file)
        server = _TlsServer(address, context, answering)
        host, port = server.server_address[:2]
        answering.base_url = f"https://{host}:{port}"
        thread = threading.Thread(target=server.serve_forever, name="cloudformation-responder", daemon=True)
        thread.start()
        try:
            yield answering
        finally:
            server.shutdown()
            server.server_close()


def is_custom_resource_request(event: Any) -> bool:
    """A CloudFormation custom resource request: what crhelper answers at ResponseURL."""
    return isinstance(event, dict) and {"RequestType", "ResponseURL", "RequestId"} <= event.keys()


def rewrite_event(event_file: Path, response_url: str, folder: Path) -> Path:
    """A copy of the request in event_file, in folder, with response_url as its ResponseURL."""
    event = json.loads(event_file.read_text())
    rewritten = folder / f"{event_file.stem}-local{event_file.suffix}"
    rewritten.write_text(json.dumps({**event, "ResponseURL": response_url}, indent=1))
    return rewritten
