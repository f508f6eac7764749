"""Fuzz the QUIC decryptor, the new signatures and the engine from a kept corpus of seeds.

Seeds in tests/unit/classify_corpus/ are valid inputs; hypothesis mutates them
(flips, cuts, insertions). Parsers must never raise and the engine's
internal-error counter (its never-raise guard) must stay 0, so a bug that the
guard would hide still fails here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, UDP

from gatewayd.classify import quic
from gatewayd.classify.engine import Classifier
from gatewayd.classify.signatures import SIGNATURES, TWO_WAY_SIGNATURES
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.applications import load_catalog

CORPUS = Path(__file__).parent / "classify_corpus"
FUZZ = settings(max_examples=int(os.environ.get("CLASSIFY_FUZZ_EXAMPLES", "300")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def seeds() -> tuple[bytes, ...]:
    found = tuple(path.read_bytes() for path in sorted(CORPUS.glob("*.bin")))
    assert len(found) >= 8, "the fuzz corpus is missing"
    return found


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    insert = draw(st.binary(max_size=16))
    position = draw(st.integers(0, cut))
    return bytes(data[:position] + insert + data[position:cut])


def test_corpus_seeds_are_valid_inputs() -> None:
    # The seeds must exercise the deep paths, not bounce off the first check.
    initial = (CORPUS / "quic_v2_initial.bin").read_bytes()
    hello = quic.feed(quic.QuicState(), initial)
    assert isinstance(hello, quic.QuicHello) and hello.sni == "www.bilibili.com"


@FUZZ
@given(mutated_seed())
def test_quic_feed_never_raises(data: bytes) -> None:
    state = quic.QuicState()
    result = quic.feed(state, data)
    assert result in (quic.NOT_QUIC, quic.NEED_MORE) or isinstance(result, quic.QuicHello)
    assert state.total <= quic.MAX_CRYPTO_BYTES


@FUZZ
@given(mutated_seed(), st.booleans())
def test_new_signatures_never_raise(data: bytes, direction_is_client: bool) -> None:
    for match in list(SIGNATURES.values()) + [entry[0] for entry in TWO_WAY_SIGNATURES.values()]:
        assert match(data, direction_is_client) in (True, False)


@functools.cache
def builtin_tables() -> ClassifierTables:
    issues: list = []
    return ClassifierTables.build(load_catalog(None, issues).values())


@FUZZ
@given(st.lists(mutated_seed(), min_size=1, max_size=6), st.sampled_from(["udp", "tcp"]))
def test_engine_on_mutated_payloads(payloads: list[bytes], transport: str) -> None:
    classifier = Classifier(builtin_tables(), max_packets=4)
    for index, payload in enumerate(payloads):
        layer = UDP(sport=40000, dport=443) if transport == "udp" else TCP(sport=40000, dport=443, flags="PA",
                                                                           seq=1 + 100 * index)
        classifier.on_packet(bytes(IP(src="192.0.2.10", dst="203.0.113.9") / layer / payload), 1.0 + index)
    assert classifier.stats.internal_errors == 0


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.glob("*.bin")))
def test_every_truncation_of_every_seed(seed: str) -> None:
    data = (CORPUS / seed).read_bytes()
    classifier = Classifier(builtin_tables())
    for cut in range(0, len(data), max(1, len(data) // 64)):
        quic.feed(quic.QuicState(), data[:cut])
        classifier.on_packet(bytes(IP(src="192.0.2.10", dst="203.0.113.9") / UDP(sport=cut + 1, dport=443)
                                   / data[:cut]), 1.0)
    assert classifier.stats.internal_errors == 0
