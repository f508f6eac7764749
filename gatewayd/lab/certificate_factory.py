"""Certificates made to order for tests and lab servers: any issuer and subject names, self-signed.

A test of what a certificate's names decide (classify/certificates.py) builds the
certificate from the format instead of cutting one out of a capture. RSA keys, so a
lab TLS server can also answer a ClientHello that offers only RSA key exchange.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class MadeCertificate:
    der: bytes
    certificate_pem: bytes
    key_pem: bytes


def made_certificate(issuer_organisation: str, issuer_common_name: str, subject_common_name: str,
                     days: int = 30) -> MadeCertificate:
    """Issuer (O, CN), subject (the same O, CN), valid from yesterday for `days`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_organisation),
                        x509.NameAttribute(NameOID.COMMON_NAME, issuer_common_name)])
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_organisation),
                         x509.NameAttribute(NameOID.COMMON_NAME, subject_common_name)])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    certificate = (x509.CertificateBuilder().issuer_name(issuer).subject_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return MadeCertificate(
        certificate.public_bytes(serialization.Encoding.DER),
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()))
