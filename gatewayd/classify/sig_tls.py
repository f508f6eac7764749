"""Signatures on a parsed TLS ClientHello (clients whose hello has a shape of its own) and on
the server certificate of a hello that named no server.

They run only on a hello whose server name no catalog app claims (a name an app
lists always wins), so they name flows that would otherwise stay "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gatewayd.classify.certificates import CertificateNames
from gatewayd.classify.tls import TlsClientHello

HelloSignature = Callable[[TlsClientHello], bool]
CertificateSignature = Callable[[CertificateNames], bool]

# Tor's link TLS (tor's src/lib/tls/tortls_openssl.c, tor_tls_new): a client sends as SNI a fake
# name from crypto_random_hostname(4, 25, "www.", ".com"): 4 to 25 characters of tor's base32
# (a-z, 2-7), and, not being a browser, no ALPN. Relays are reached by address, never looked up.
_TOR_FAKE_NAME = re.compile(r"www\.([a-z2-7]{4,25})\.com")
_BASE32_DIGITS = frozenset("234567")


def tor_link(hello: TlsClientHello) -> bool:
    """A Tor client's link handshake to a relay (or bridge without a pluggable transport).

    A real site can have such a name (www.html5test.com), so the random label must also
    look random: it holds digits 2-7 (a label of 8 or more random base32 characters does
    with probability above 86%), two of them when it is shorter. A miss only leaves the flow
    unknown; a real site named tor would be a wrong name."""
    if hello.sni is None or hello.alpn or hello.ech:
        return False
    found = _TOR_FAKE_NAME.fullmatch(hello.sni)
    if found is None:
        return False
    label = found.group(1)
    digits = sum(1 for character in label if character in _BASE32_DIGITS)
    return digits >= 2 or (digits == 1 and len(label) >= 10)


# AnyDesk's own TLS (relays on tcp/80 and 443, direct sessions on 7070): its hello names no
# server, and its peers present certificates of AnyDesk's private CA, "AnyNet Root CA",
# issued in the name of the vendor's former company, philandro Software GmbH. A public CA
# would never issue under that organisation, so the issuer names the app.
_ANYDESK_ISSUER_ORGANISATIONS = frozenset(("philandro Software GmbH", "AnyDesk Software GmbH"))


def anydesk_certificate(names: CertificateNames) -> bool:
    return names.issuer_o in _ANYDESK_ISSUER_ORGANISATIONS and names.issuer_cn.startswith("AnyNet Root CA")
