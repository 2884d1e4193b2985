"""A throwaway certificate authority with a server and a client certificate, made with the ``openssl`` command.

For TLS-only test servers: the server's certificate names ``127.0.0.1`` and ``localhost`` (so hostname checking
stays on), the client's lets a server that requires client certificates (mutual TLS) be tested. Keys are ECDSA
P-256, valid for a day: a handshake costs the single-threaded server a fraction of an RSA one, so a herd of new
connections does not time out on a busy machine; nothing here is meant to outlive the test session.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pytest_mw.servers.errors import ServerUnavailable

__all__ = ["TlsFiles", "make_tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and of the server's and the client's certificates and keys."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_query(self) -> str:
        """redis-py URL query arguments that make a client trust the CA and present the client certificate."""
        files = {"ssl_ca_certs": self.ca_cert, "ssl_certfile": self.client_cert, "ssl_keyfile": self.client_key}
        return "&".join(f"{arg}={quote(str(path), safe='/')}" for arg, path in files.items())


_LEAF = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
)
"""What Python 3.13's strict X.509 checking (``VERIFY_X509_STRICT``, on by default) asks of a leaf certificate; the
CA gets its key usage and constraints too."""

_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def _openssl(*args: str, cwd: Path) -> None:
    executable = shutil.which("openssl")
    if executable is None:
        raise ServerUnavailable("openssl is not on PATH (Debian: apt-get install openssl): no TLS test server")
    done = subprocess.run([executable, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerUnavailable(f"openssl {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    """``{name}.key`` and ``{name}.crt`` signed by the CA in ``folder``, with ``extensions`` (an ``extfile`` text)."""
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("req", *_NEW_KEY, "-keyout", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=folder)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        cwd=folder,
    )  # fmt: skip


def make_tls_files(folder: Path) -> TlsFiles:
    """Create the CA, the server's and the client's certificates in ``folder`` (which must exist)."""
    _openssl(
        "req", "-x509", *_NEW_KEY, "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "1", "-subj", "/CN=pytest-mw test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=folder,
    )  # fmt: skip
    _signed(
        folder,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n" + _LEAF,
    )
    _signed(folder, "client", "/CN=pytest-mw client", "extendedKeyUsage=clientAuth\n" + _LEAF)
    for path in folder.glob("*.key"):
        path.chmod(0o600)
    return TlsFiles(
        folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "client.crt", folder / "client.key"
    )
