"""A client built from a ``temporalio.envconfig`` TLS profile really speaks TLS.

A local TLS listener (a self-signed certificate made with ``cryptography``)
stands in for a Temporal frontend; the profile names its CA. The listener
completes a TLS handshake with the client that ``temporal_connect_config()``
builds (so the profile's CA was used to verify it), sees the server name the
profile asked for, and gRPC is spoken only inside it (plain-text HTTP/2 never
reaches the socket: the HTTP/2 preface arrives only inside the TLS channel).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from temporal_plumbing.client import connect_client, temporal_connect_config


def _cert(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
          signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it (PEM
    files: CA certificate, server certificate, server key)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]),
               ca_key, ca_key, ca=True)
    server = _cert("localhost", ca.subject, key, ca_key, ca=False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TlsListener:
    """Accepts one connection; records its first bytes and the TLS handshake."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]
        self.first_bytes = b""
        self.server_name: str | None = None
        self.handshake_done = threading.Event()
        self.decrypted = b""
        self.error = ""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.server_name = name

        self.context.sni_callback = sni  # type: ignore[assignment]
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            self.first_bytes = conn.recv(5, socket.MSG_PEEK)
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except ssl.SSLError as err:
                self.error = str(err)
                return
            with tls:
                self.handshake_done.set()
                try:  # the HTTP/2 preface and the first frames, decrypted
                    while len(self.decrypted) < 4096:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        self.decrypted += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


async def test_client_from_a_tls_profile_speaks_tls(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    ca, cert, key = make_certificates(tmp_path)
    listener = TlsListener(cert, key)
    profile = tmp_path / "temporal.toml"
    profile.write_text(f'[profile.prod]\naddress = "localhost:{listener.port}"\n'
                       'namespace = "prod-ns"\napi_key = "key-0123456789"\n'
                       f'[profile.prod.tls]\nserver_ca_cert_path = "{ca}"\n'
                       'server_name = "localhost"\n')
    for var in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    config = temporal_connect_config()
    assert config["target_host"] == f"localhost:{listener.port}"
    assert config["namespace"] == "prod-ns" and config["tls"]
    connect = asyncio.create_task(connect_client())  # the path of worker and CLI
    try:
        done = await asyncio.to_thread(listener.handshake_done.wait, 60)
        assert done, f"the client never completed a TLS handshake: {listener.error}"
        for _ in range(100):  # give the client a moment to send its first frames
            if len(listener.decrypted) >= 24 or connect.done():
                break
            await asyncio.sleep(0.05)
    finally:
        connect.cancel()
        try:
            await connect
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - no real server here
            pass
        listener.close()
        listener.thread.join(10)
    assert listener.first_bytes[:1] == b"\x16"  # a TLS handshake record: the ClientHello
    assert listener.server_name == "localhost"
    assert not listener.first_bytes.startswith(b"PRI * HTTP/2")  # not plain-text gRPC
    assert listener.decrypted.startswith(b"PRI * HTTP/2.0")  # gRPC inside the TLS channel
