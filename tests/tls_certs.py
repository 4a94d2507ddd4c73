"""Test helpers: a private CA and a server certificate for loopback, made in the test (trustme).

``ServerFiles`` writes the server's certificate chain and key and the CA's certificate as PEM
files (for config ``tls`` and ``tcp_client.py --ca``) and gives ready TLS contexts.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["ServerFiles", "make_server_files", "LOOPBACK_NAMES"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerFiles:
    """``cert_file`` (chain), ``key_file`` (unencrypted PKCS#8), ``ca_file``: PEM paths."""

    ca: trustme.CA
    cert: trustme.LeafCert
    cert_file: Path
    key_file: Path
    ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Trusts only this CA; checks the server's name."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_server_files(directory: Path, *names: str) -> ServerFiles:
    """A fresh CA and a server certificate for ``names`` (default: loopback), written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*(names or LOOPBACK_NAMES))
    cert_file, key_file, ca_file = directory / "server.crt", directory / "server.key", directory / "ca.crt"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return ServerFiles(ca, cert, cert_file, key_file, ca_file)
