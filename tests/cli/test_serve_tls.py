"""`fhirgate serve --http … --certfile --keyfile` serves HTTPS directly, with the same auth as plain HTTP."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fhirgate.cli.main import main

FHIRGATE = Path(sys.executable).with_name("fhirgate")


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.slow
def test_https_serves_healthz_and_requires_a_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["demo-data", "--data", str(data), "--patients", "3", "--today", "2026-01-05", "--no-progress"]) == 0
    cert, key = _self_signed(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(FHIRGATE),
            "serve",
            "--data",
            str(data),
            "--http",
            f"127.0.0.1:{port}",
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=2) as client:
            for _ in range(100):
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise AssertionError("HTTPS server did not start")
            refused = client.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert refused.status_code == 401
            assert "resource_metadata=" in refused.headers["www-authenticate"]
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port is not served
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"https://127.0.0.1:{port}/mcp" in err
    assert "trusted token issuers" in err


def test_certfile_without_keyfile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--data", str(tmp_path), "--http", "127.0.0.1:1", "--certfile", "c.pem"])
    assert code == 1
    assert "--keyfile" in capsys.readouterr().err
