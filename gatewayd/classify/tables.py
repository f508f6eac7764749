"""ClassifierTables: the catalog turned into the lookups the engine does per flow.

Built once per policy (re)load, then only read. Addresses are looked up as
integers: per family, one dict per prefix length present, probed from the
longest prefix down, so the most specific network wins in at most
(number of distinct prefix lengths) dict probes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from gatewayd.classify.domains import DomainMatcher
from gatewayd.classify.packet import PROTO_TCP, PROTO_UDP
from gatewayd.classify.signatures import KNOWN_SIGNATURES
from gatewayd.classify.urls import UrlRules
from gatewayd.policy.model import Application, PortMatch

PROTOCOL_NUMBERS: dict[str, int] = {"tcp": PROTO_TCP, "udp": PROTO_UDP}
_EXPANDED_RANGE_LIMIT = 4096  # wider port ranges are scanned instead of expanded into the dict

# (proto number, first port, last port)
PortRange = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class AddressMatch:
    app: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port_specific: bool = False  # the catalog named ports too: more specific than a DNS-learned name


class _AddressEntry:
    __slots__ = ("match", "ports")

    def __init__(self, match: AddressMatch, ports: tuple[PortRange, ...]) -> None:
        self.match = match
        self.ports = ports  # empty = any port

    def accepts(self, proto: int, port: int) -> bool:
        if not self.ports:
            return True
        return any(range_proto == proto and first <= port <= last for range_proto, first, last in self.ports)


_MAX_REMEMBERED_ANSWERS = 8192


class AddressTable:
    """Networks (optionally with ports) -> app; longest prefix wins."""

    def __init__(self) -> None:
        # family bits (32/128) -> prefix length -> network int >> (bits - length) -> entries
        self._by_family: dict[int, dict[int, dict[int, list[_AddressEntry]]]] = {32: {}, 128: {}}
        self._lengths: dict[int, tuple[int, ...]] = {32: (), 128: ()}
        # Answers already worked out: a miss probes every prefix length (about 3 us), and an
        # office's new flows mostly go to servers it reached a moment ago. Bounded; emptied when full.
        self._answers: dict[tuple[bytes, int, int], AddressMatch | None] = {}

    def add(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, app: str,
            ports: tuple[PortRange, ...] = ()) -> None:
        bits = network.max_prefixlen
        length = network.prefixlen
        key = int(network.network_address) >> (bits - length)
        by_length = self._by_family[bits].setdefault(length, {})
        by_length.setdefault(key, []).append(_AddressEntry(AddressMatch(app, network, bool(ports)), ports))
        self._lengths[bits] = tuple(sorted(self._by_family[bits], reverse=True))
        self._answers.clear()

    def lookup(self, packed_address: bytes, proto: int = 0, port: int = 0) -> AddressMatch | None:
        """The most specific network holding the address whose port condition accepts (proto, port)."""
        key = (packed_address, proto, port)
        answers = self._answers
        if key in answers:
            return answers[key]
        if len(answers) >= _MAX_REMEMBERED_ANSWERS:
            answers.clear()
        found = answers[key] = self._search(packed_address, proto, port)
        return found

    def _search(self, packed_address: bytes, proto: int, port: int) -> AddressMatch | None:
        bits = len(packed_address) * 8
        lengths = self._lengths.get(bits)
        if not lengths:
            return None
        value = int.from_bytes(packed_address, "big")
        by_length = self._by_family[bits]
        for length in lengths:
            entries = by_length[length].get(value >> (bits - length))
            if entries is not None:
                for entry in entries:
                    if entry.accepts(proto, port):
                        return entry.match
        return None

    def __len__(self) -> int:
        return sum(len(table) for family in self._by_family.values() for table in family.values())


class PortTable:
    """(proto, port) -> app for apps identified by port alone (the weakest evidence)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[int, int], str] = {}
        self._wide_ranges: list[tuple[int, int, int, str]] = []

    def add(self, port_range: PortRange, app: str) -> None:
        proto, first, last = port_range
        if last - first < _EXPANDED_RANGE_LIMIT:
            for port in range(first, last + 1):
                self._exact.setdefault((proto, port), app)
        else:
            self._wide_ranges.append((proto, first, last, app))

    def lookup(self, proto: int, port: int) -> str | None:
        app = self._exact.get((proto, port))
        if app is not None:
            return app
        for range_proto, first, last, range_app in self._wide_ranges:
            if range_proto == proto and first <= port <= last:
                return range_app
        return None


def _port_ranges(ports: Iterable[PortMatch]) -> tuple[PortRange, ...]:
    return tuple((PROTOCOL_NUMBERS[p.protocol], p.first, p.last) for p in ports if p.protocol in PROTOCOL_NUMBERS)


@dataclass
class ClassifierTables:
    domains: DomainMatcher
    addresses: AddressTable
    ports: PortTable
    signature_apps: dict[str, tuple[str, ...]]  # signature name -> app ids, catalog order
    categories: dict[str, str]  # app id -> category
    unknown_signatures: tuple[str, ...] = field(default=())  # named in the catalog, not implemented
    urls: UrlRules = field(default_factory=UrlRules)
    tcp_only_apps: frozenset[str] = field(default=frozenset())  # QUIC of these is blocked (policy)
    # app -> its one voice-video sub-app (whatsapp -> whatsappcall): what a call of the app is named
    call_apps: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def build(apps: Iterable[Application]) -> ClassifierTables:
        apps = list(apps)
        domains = DomainMatcher()
        addresses = AddressTable()
        ports = PortTable()
        signature_apps: dict[str, list[str]] = {}
        categories: dict[str, str] = {}
        unknown_signatures: list[str] = []
        port_only: list[tuple[PortRange, str]] = []
        for app in apps:
            categories[app.id] = app.category
            for pattern in app.domains:
                domains.add(pattern, app.id)
            app_ports = _port_ranges(app.ports)
            for network in app.networks:
                addresses.add(network, app.id, app_ports)
            for on_ports in app.networks_on_ports:
                addresses.add(on_ports.network, app.id, _port_ranges(on_ports.ports))
            if app_ports and not app.networks:
                # Ports without addresses: the weakest evidence, for flows nothing else decided.
                port_only.extend((port_range, app.id) for port_range in app_ports)
            for name in app.signatures:
                if name in KNOWN_SIGNATURES:
                    signature_apps.setdefault(name, []).append(app.id)
                elif name not in unknown_signatures:
                    unknown_signatures.append(name)
        call_children: dict[str, list[str]] = {}
        for app in apps:
            if app.parent is not None and app.category == "voice-video":
                call_children.setdefault(app.parent, []).append(app.id)
        # Narrow ranges first, so a single well-known port beats a wide range that covers it.
        for port_range, app_id in sorted(port_only, key=lambda item: item[0][2] - item[0][1]):
            ports.add(port_range, app_id)
        return ClassifierTables(
            domains=domains,
            addresses=addresses,
            ports=ports,
            signature_apps={name: tuple(ids) for name, ids in signature_apps.items()},
            categories=categories,
            unknown_signatures=tuple(unknown_signatures),
            urls=UrlRules.build(apps),
            # Two call sub-apps would make the choice a guess: then the parent's own name stays.
            call_apps={parent: children[0] for parent, children in call_children.items() if len(children) == 1},
        )

    def has_app(self, app_id: str) -> bool:
        return app_id in self.categories
