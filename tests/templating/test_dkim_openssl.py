"""DKIM signing through OpenSSL gives exactly dkimpy's own signature, and verifies."""

from __future__ import annotations

import hashlib

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import templating.dkimsign as dkimsign


def test_openssl_primitive_matches_dkimpy_pure_python() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    parsed = dkim.crypto.parse_pem_private_key(pem)
    for name in ("sha256", "sha1"):
        digest = hashlib.new(name, b"the canonicalised headers")
        assert dkimsign._openssl_sign(digest, parsed) == \
            dkimsign._pure_python_sign(digest, parsed)
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimsign._openssl_sign

    signer = dkimsign.DkimSigner(selector="s1", domain="acme.test", private_key=pem)
    raw = (b"From: News <news@acme.test>\r\nTo: a@example.test\r\nSubject: Hi\r\n"
           b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1.x@acme.test>\r\n"
           b"List-Unsubscribe: <https://t.acme.test/u/x>\r\n"
           b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nHello\r\n")
    signed = signer.sign(raw)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"s1._domainkey.acme.test." else b""

    assert dkim.verify(signed, dnsfunc=dns)
    assert b"list-unsubscribe" in signed.split(b"\r\n\r\n")[0].lower()
