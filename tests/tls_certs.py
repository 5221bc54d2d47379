"""Self-signed certificates made by the tests, with the ``openssl`` command line.

``make_pki(dir)`` writes a CA, a server certificate for ``localhost`` and
``127.0.0.1`` signed by it, a client certificate signed by it, and a second,
unrelated CA (the "wrong CA" of the failure tests). Keys are EC P-256: fast
to make. Tests skip with a clear message when ``openssl`` is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(cert),
    )
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
    )
    return cert, key


def make_pki(directory: Path) -> Pki:
    """A CA, a server and a client certificate signed by it, and an unrelated CA, in ``directory``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    wrong = _ca(directory, "wrong-ca")
    server = _leaf(
        directory, "server", ca,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    client = _leaf(directory, "client", ca, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return Pki(ca[0], server[0], server[1], client[0], client[1], wrong[0])
