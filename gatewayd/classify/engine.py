"""The per-flow classifier the daemon calls for every queued packet.

The kernel queues only the first packets of an undecided flow; each flow is
decided at most once here, from the strongest evidence available:

  1. the server address+port in the catalog (e.g. Meta's STUN relays = WhatsApp
     call), then catalog networks, then addresses DNS answers taught (answers
     also decide the DNS flow): all known on the first packet;
  2. TLS SNI (TCP, reassembled) or QUIC SNI (decrypted Initials), ALPN kept as
     detail; with ECH, or a name no app owns, the address/port evidence wins;
  3. HTTP: URL rules, then Host;
  4. named payload signatures (one packet, or both directions for weak ones, or an
     opening and the answer that echoes it);
     carrier signatures (STUN) take the app of the addresses when known;
  5. after `max_packets` packets: the query name of an unanswered lookup, the
     port table, else "unknown" -- final, so the kernel stops queueing.

Learned addresses are global, not per client: every office client asks the
same resolvers, so one client's answer is right for the next client too, and
the kernel map stays one entry per server address (a (client . server) key
would multiply it by the number of clients and miss clients that resolved
through DoH). The cost: an address shared by two apps' names follows the last
answer seen; the TTL keeps that window short. Because one answer speaks for
everyone, only answers nobody on the LAN can make up teach, one client may
teach only so much, and an address the catalog lists is never learned
(classify/dns_learning.py).

Memory is bounded: flows idle longer than `flow_timeout` expire, the flow
table never exceeds `max_flows`, per-flow buffers are capped at 16 KiB and
freed as soon as the flow is decided. No LAN host can take it all (budget in
flow_budget.py): a host over its share of the table loses its own oldest flow,
a full table loses the heaviest host's oldest; buffered bytes have a budget
per host and in total, and an undecided flow over it is given up (decided as
after `max_packets`, its verdict sent with its next packet), that host's
oldest first, then the oldest anywhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast, overload

from gatewayd.classify import certificates, sig_calls, sig_services
from gatewayd.classify import dns as dns_parser
from gatewayd.classify import http as http_parser
from gatewayd.classify import quic as quic_parser
from gatewayd.classify import tls as tls_parser
from gatewayd.classify.dns_learning import (
    CATALOG_ADDRESS,
    LEARNED,
    NO_APP,
    NOT_A_RESOLVER,
    REFUSED,
    AnswerOrigin,
    DnsLearningStats,
    LearnedAddresses,
    Learning,
    PendingQueries,
)
from gatewayd.classify.flow_budget import FlowBudget, FlowKey, HostLedger
from gatewayd.classify.memories import CallEndpoints, ExpiringMemory, NamedServers
from gatewayd.classify.packet import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, PacketInfo, parse_packet
from gatewayd.classify.sharing import SharedValues
from gatewayd.classify.signatures import (
    CALL_SIGNATURES,
    CARRIER_SIGNATURES,
    CERTIFICATE_SIGNATURES,
    EXCHANGE_SIGNATURES,
    HELLO_SIGNATURES,
    SIGNATURE_PROTOCOLS,
    SIGNATURES,
    TWO_WAY_SIGNATURES,
    Answer,
    Opening,
    Signature,
)
from gatewayd.classify.tables import ClassifierTables

UNKNOWN_APP = "unknown"
DNS_APP = "dns"
DNS_PORT = 53
MIN_LEARNED_TTL = 30
MAX_LEARNED_TTL = 86400
MAX_STREAM_BYTES = 16 * 1024
_EXPIRY_INTERVAL = 1.0  # seconds between sweeps of the flow table
_SEQ_HALF_SPACE = 0x80000000
_SEQ_MASK = 0xFFFFFFFF
_PROTOCOL_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CALL_ENDPOINT_SECONDS = 300.0  # a call's endpoints are remembered for this long
MAX_CALL_ENDPOINTS = 4096
# A client's TLS/QUIC server names, per (client, server): a call's relay is often the server its
# signalling reached by name a moment before (Zoom's media servers, TURN over TLS).
NAMED_SERVER_SECONDS = 600.0
MAX_NAMED_SERVERS = 8192
MAX_SHARED_DECISIONS = 1024  # distinct decisions kept for sharing (~250 bytes each)
MAX_SHARED_SERVER_ADDRESSES = 4096  # server addresses kept for sharing (~60 bytes each)
_SERVER_NAME_METHODS = frozenset(("tls-sni", "quic-sni"))
# Apps a STUN SOFTWARE text may name by its first word: apps that make calls.
_CALLING_CATEGORIES = frozenset(("voice-video", "im"))
# Apps whose servers carry calls' media as well: the calling apps and the office suites (DingTalk,
# WeCom, Feishu, Slack meet in their own clients).
_MEDIA_CATEGORIES = _CALLING_CATEGORIES | frozenset(("office",))


@dataclass(frozen=True, slots=True)  # slots: every decided flow holds one (issue 14, bytes per flow)
class Decision:
    app: str  # an app id from the tables, or "unknown"
    method: str  # dns-learned, tls-sni, quic-sni, http-host, http-url, address, signature, port, give-up, dns
    evidence: str  # the domain / SNI / Host / signature name / address / "tcp/22"
    # Supporting evidence that did not decide by itself (ALPN, the URL rule, the QUIC version);
    # left out of equality so a decision compares by what decided it.
    details: str = field(default="", compare=False)


@dataclass(frozen=True)
class FlowSummary:
    """One flow as the classifier saw it, for offline reports."""

    proto: int
    client: str  # the side that opened the flow (or sent the first packet seen, mid-stream)
    client_port: int
    server: str
    server_port: int
    packets: int
    decision: Decision | None


@dataclass(frozen=True)
class LearnedAddress:
    address: IPAddress
    app: str
    ttl: int  # seconds, clamped to [MIN_LEARNED_TTL, MAX_LEARNED_TTL]
    name: str  # the domain that matched
    changed: bool = False  # it had another app until this answer: the kernel's entry must be replaced


@dataclass
class PacketOutcome:
    decision: Decision | None  # set when THIS packet decided the flow (once per flow)
    learned: list[LearnedAddress] = field(default_factory=list)
    # The flow's decision on every packet once decided, this one included. The kernel
    # queues only flows whose ct mark is undecided, so a decided flow that still shows
    # up lost its mark: its deciding packet was dropped (blocked) before conntrack
    # confirmed the entry, as happens to the first UDP packet of a blocked flow.
    flow_decision: Decision | None = None


@dataclass
class ClassifierStats:
    packets: int = 0
    malformed: int = 0  # unparseable packets, ignored
    fragments: int = 0  # non-first fragments: no ports, cannot be put in a flow
    internal_errors: int = 0  # bugs caught by the never-raise guard
    flows_created: int = 0
    flows_expired: int = 0
    flows_evicted: int = 0  # pushed out by max_flows (the heaviest host's oldest)
    flows_evicted_host_limit: int = 0  # a host over its share of the table: its own oldest
    flows_given_up_host_budget: int = 0  # undecided, given up: their host's buffers over its budget
    flows_given_up_total_budget: int = 0  # undecided, given up: all buffers over the total budget
    decisions: int = 0
    dns_lookups_done: int = 0  # DNS flows forgotten once their lookups were answered


class _FlowRarities:
    """What only some flows ever need (DNS, QUIC, reordering, two-way and exchange signatures, STUN): a flow
    gets this record on the first write of one of them, so the common flow carries one slot
    for all eight instead of eight (issue 14: bytes per tracked flow at max_flows)."""

    __slots__ = ("early_segments", "dns_stream", "dns_question", "dns_queries", "two_way_seen", "quic",
                 "tentative", "exchange_tokens")

    def __init__(self) -> None:
        # client->server segments that came ahead of a gap, by sequence number, until it fills
        self.early_segments: dict[int, bytes] | None = None
        self.dns_stream: bytearray | None = None  # server->client bytes of DNS over TCP
        self.dns_question: str | None = None  # from the query, for a lookup that never got an answer
        self.dns_queries: PendingQueries | None = None  # queries no answer matched yet (DNS flows)
        self.two_way_seen: dict[str, int] | None = None  # two-way signature -> directions seen (1 client, 2 server)
        self.quic: quic_parser.QuicState | None = None  # CRYPTO reassembly while the ClientHello is incomplete
        self.tentative: Decision | None = None  # a generic carrier (STUN) seen; something more specific may follow
        self.exchange_tokens: dict[str, int] | None = None  # exchange signature -> its opening's token


_Rare = TypeVar("_Rare")


class _RareField(Generic[_Rare]):
    """A _Flow attribute kept in its _FlowRarities: None until written, and writing None to a
    flow without the record makes none."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, flow: None, owner: type) -> _RareField[_Rare]: ...

    @overload
    def __get__(self, flow: _Flow, owner: type) -> _Rare | None: ...

    def __get__(self, flow: _Flow | None, owner: type) -> _RareField[_Rare] | _Rare | None:
        if flow is None:
            return self
        rarities = flow.rarities
        return None if rarities is None else cast("_Rare | None", getattr(rarities, self._name))

    def __set__(self, flow: _Flow, value: _Rare | None) -> None:
        rarities = flow.rarities
        if rarities is None:
            if value is None:
                return
            rarities = flow.rarities = _FlowRarities()
        setattr(rarities, self._name, value)


class _Flow:
    __slots__ = ("client_addr", "client_port", "server_addr", "server_port", "client_known",
                 "is_dns", "packets", "client_isn", "next_seq", "stream", "want_tls", "want_http",
                 "last_seen", "decision", "key", "held", "verdict_unsent", "opened_with_tls", "rarities")
    key: FlowKey  # set by the engine when it files the flow

    early_segments = _RareField[dict[int, bytes]]()
    dns_stream = _RareField[bytearray]()
    dns_question = _RareField[str]()
    dns_queries = _RareField[PendingQueries]()
    two_way_seen = _RareField[dict[str, int]]()
    quic = _RareField[quic_parser.QuicState]()
    tentative = _RareField[Decision]()
    exchange_tokens = _RareField[dict[str, int]]()

    def __init__(self, client_addr: bytes, client_port: int, server_addr: bytes, server_port: int,
                 client_known: bool, is_dns: bool, client_isn: int, now: float) -> None:
        self.client_addr = client_addr
        self.client_port = client_port
        self.server_addr = server_addr
        self.server_port = server_port
        self.client_known = client_known  # False: direction guessed from the first packet (mid-stream)
        self.is_dns = is_dns
        self.packets = 0
        self.decision: Decision | None = None
        self.client_isn = client_isn  # -1 when no SYN was seen
        self.next_seq = (client_isn + 1) & _SEQ_MASK if client_isn >= 0 else -1
        # client->server bytes, only while a parser needs more (DNS over TCP: the queries). A TLS or
        # HTTP stream starts as its first segment's own bytes (no copy, 24 bytes less than a bytearray).
        self.stream: bytes | bytearray | None = None
        self.want_tls = True
        self.want_http = True
        self.last_seen = now
        self.held = 0  # buffered bytes as last counted in the host ledger
        self.verdict_unsent = False  # decided between its packets (given up): the next one carries the verdict
        self.opened_with_tls = False  # the client's first bytes were a TLS ClientHello (implicit TLS)
        self.rarities: _FlowRarities | None = None  # see _FlowRarities

    @property
    def decided(self) -> bool:
        return self.decision is not None


def _unseen_part(next_seq: int, seq: int, payload: bytes) -> bytes:
    """What of a segment starting at `seq` (at or before `next_seq`) the stream does not have yet."""
    behind = (next_seq - seq) & _SEQ_MASK
    return payload[behind:] if behind < len(payload) else b""


def _buffered_bytes(flow: _Flow) -> int:
    held = 0
    if flow.stream is not None:
        held += len(flow.stream)
    rarities = flow.rarities
    if rarities is not None:
        if rarities.dns_stream is not None:
            held += len(rarities.dns_stream)
        if rarities.early_segments is not None:
            held += sum(len(segment) for segment in rarities.early_segments.values())
        if rarities.quic is not None:
            held += rarities.quic.total
    return held


_SERVICE_PORTS = tuple(range(1024))  # ints over 256 are a new object per packet; these are shared


def _shared_port(port: int) -> int:
    return _SERVICE_PORTS[port] if port < 1024 else port


def _canonical_key(proto: int, src: bytes, sport: int, dst: bytes, dport: int) -> FlowKey:
    """Both directions of a flow have one key: the lower endpoint first."""
    if src < dst or (src == dst and sport <= dport):
        return (proto, src, sport, dst, dport)
    return (proto, dst, dport, src, sport)


def _clamp_ttl(ttl: int) -> int:
    return MIN_LEARNED_TTL if ttl < MIN_LEARNED_TTL else MAX_LEARNED_TTL if ttl > MAX_LEARNED_TTL else ttl


def _address_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


class Classifier:
    def __init__(self, tables: ClassifierTables, max_packets: int = 8, flow_timeout: float = 30.0,
                 max_flows: int = 65536, max_learned: int = 262144,
                 dns_flow_takes_queried_app: bool = True, budget: FlowBudget | None = None,
                 learned: LearnedAddresses | None = None, forget_answered_lookups: bool = True) -> None:
        """`learned`: the learned-address memory with its per-client bounds (default: `max_learned` entries).
        `forget_answered_lookups`: drop a DNS flow once its lookups are answered (live: see
        _forget_if_answered); an offline report keeps it, to name each flow once."""
        self.max_packets = max_packets
        self.flow_timeout = flow_timeout
        self.max_flows = max_flows
        self.budget = budget if budget is not None else FlowBudget.for_table(max_flows)
        self._ledger = HostLedger()
        self.max_learned = max_learned
        # nDPI labels a lookup of a WeChat name "DNS.WeChat"; doing the same lets a policy
        # that blocks an app also starve its name lookups. False keeps every DNS flow "dns".
        self.dns_flow_takes_queried_app = dns_flow_takes_queried_app
        self.forget_answered_lookups = forget_answered_lookups
        self.stats = ClassifierStats()
        # A plain dict (40 bytes an entry, an OrderedDict 88): the ledger keeps each host's flows
        # in the order they were last active, which is all eviction and expiry need.
        self._flows: dict[FlowKey, _Flow] = {}
        self._learned = learned if learned is not None else LearnedAddresses(max_learned)
        self.dns_stats = DnsLearningStats()
        self._call_endpoints: CallEndpoints = ExpiringMemory(MAX_CALL_ENDPOINTS)
        self._named_servers: NamedServers = ExpiringMemory(MAX_NAMED_SERVERS)
        self._last_expiry = float("-inf")
        self._decisions: SharedValues[tuple[str, str, str, str], Decision] = SharedValues(MAX_SHARED_DECISIONS)
        self._server_addresses: SharedValues[bytes, bytes] = SharedValues(MAX_SHARED_SERVER_ADDRESSES)
        self._tables = tables
        self._signatures: tuple[tuple[str, Signature, frozenset[int], str], ...] = ()
        self._two_way: tuple[tuple[str, Signature, frozenset[int], str], ...] = ()
        self._exchanges: tuple[tuple[str, Opening, Answer, frozenset[int], str], ...] = ()
        self.replace_tables(tables)

    # ----------------------------------------------------------------- public

    @property
    def tables(self) -> ClassifierTables:
        return self._tables

    def replace_tables(self, tables: ClassifierTables) -> None:
        """Switch to a new catalog (policy reload); flows in progress and learned addresses stay."""
        self._tables = tables
        self._signatures = tuple(
            (name, SIGNATURES[name], SIGNATURE_PROTOCOLS[name], app_ids[0])
            for name, app_ids in tables.signature_apps.items() if app_ids and name in SIGNATURES
        )
        self._certificate_signatures = tuple(
            (name, CERTIFICATE_SIGNATURES[name], app_ids[0])
            for name, app_ids in tables.signature_apps.items() if app_ids and name in CERTIFICATE_SIGNATURES
        )
        self._hello_signatures = tuple(
            (name, HELLO_SIGNATURES[name], app_ids[0])
            for name, app_ids in tables.signature_apps.items() if app_ids and name in HELLO_SIGNATURES
        )
        # Mail signatures whose TLS variant the catalog has: their sessions are watched for STARTTLS.
        self._mail_upgrades = {name: variant for name, variant in sig_services.MAIL_TLS_VARIANTS.items()
                               if name in tables.signature_apps and variant in tables.categories}
        self._call_apps = frozenset(app for name in CALL_SIGNATURES for app in tables.signature_apps.get(name, ()))
        self._two_way = tuple(
            (name, TWO_WAY_SIGNATURES[name][0], TWO_WAY_SIGNATURES[name][1], app_ids[0])
            for name, app_ids in tables.signature_apps.items() if app_ids and name in TWO_WAY_SIGNATURES
        )
        self._exchanges = tuple(
            (name, *EXCHANGE_SIGNATURES[name], app_ids[0])
            for name, app_ids in tables.signature_apps.items() if app_ids and name in EXCHANGE_SIGNATURES
        )
        # Re-match learned names: an app may have gained or lost the domain, and an
        # address the catalog now lists is the catalog's.
        def rematched(address: bytes, _app: str, name: str) -> str | None:
            match = tables.domains.lookup(name)
            if match is None or tables.addresses.lookup(address) is not None:
                return None
            return match.app

        self._learned.revise(rematched)

    def on_packet(self, ip_packet: bytes, now: float, from_client: bool | None = None,
                  answer_origin: AnswerOrigin = AnswerOrigin.NAMED_RESOLVER) -> PacketOutcome:
        """Feed one queued packet (starting at the IP header). Never raises.

        `from_client`: the packet's direction when the caller knows it (the kernel's
        conntrack does); None lets the engine infer it from the SYN or the first packet.
        `answer_origin`: who sent the packet if it is a DNS answer, as the kernel says
        (the daemon always tells); without a kernel (a capture) the server is taken
        for a named resolver, whose answers must still match a query on their flow.
        """
        try:
            return self._on_packet(ip_packet, now, from_client, answer_origin)
        except Exception:  # a bug must not take the queue down: count it, let the packet pass undecided
            self.stats.internal_errors += 1
            return PacketOutcome(None, [])

    def summary_of(self, ip_packet: bytes) -> FlowSummary | None:
        """The flow this packet belongs to, if the table holds it (offline replay reports it)."""
        info = parse_packet(ip_packet)
        if info is None or not info.l4_present:
            return None
        flow = self._flows.get(self._key_of(info))
        return None if flow is None else self._summary(info.proto, flow)

    def conclude(self) -> list[FlowSummary]:
        """End of input (a capture's last packet): every flow still undecided gets its last-resort verdict.

        The kernel would have given up on these after max_packets; a capture that
        ends first leaves them open, and an offline report must still name them.
        """
        concluded = []
        # Least recently active first (stable: of equal times, the first filed), as the table once kept them.
        for key, flow in sorted(self._flows.items(), key=lambda item: item[1].last_seen):
            if not flow.decided:
                self._decide(flow, self._last_resort(flow, key[0]))
                concluded.append(self._summary(key[0], flow))
        return concluded

    @staticmethod
    def _summary(proto: int, flow: _Flow) -> FlowSummary:
        return FlowSummary(proto, _address_text(flow.client_addr), flow.client_port,
                           _address_text(flow.server_addr), flow.server_port, flow.packets, flow.decision)

    @staticmethod
    def _key_of(info: PacketInfo) -> FlowKey:
        return _canonical_key(info.proto, info.src, info.sport, info.dst, info.dport)

    def learned_app(self, address: IPAddress, now: float) -> tuple[str, str] | None:
        """(app, name) learned from DNS for an address, if still valid."""
        return self._learned.recall(address.packed, now)

    def learned_by(self, client: IPAddress) -> int:
        """Entries of the learned map that `client`'s lookups wrote (its share)."""
        return self._learned.held_by(client.packed)

    @property
    def flow_count(self) -> int:
        return len(self._flows)

    @property
    def buffered_bytes(self) -> int:
        """Payload bytes held in reassembly buffers, all flows."""
        return self._ledger.buffered_bytes

    @property
    def learned_count(self) -> int:
        return len(self._learned)

    # ---------------------------------------------------------------- per packet

    def _on_packet(self, ip_packet: bytes, now: float, from_client: bool | None,
                   answer_origin: AnswerOrigin) -> PacketOutcome:
        stats = self.stats
        stats.packets += 1
        info = parse_packet(ip_packet)
        if info is None:
            stats.malformed += 1
            return PacketOutcome(None, [])
        if not info.l4_present:
            stats.fragments += 1
            return PacketOutcome(None, [])
        if now - self._last_expiry >= _EXPIRY_INTERVAL:
            self._expire(now)

        proto = info.proto
        src, dst, sport, dport = info.src, info.dst, info.sport, info.dport
        if src < dst or (src == dst and sport <= dport):
            key = (proto, src, sport, dst, dport)
        else:
            key = (proto, dst, dport, src, sport)
        flows = self._flows
        flow = flows.get(key)
        is_syn = proto == PROTO_TCP and info.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        if flow is not None and is_syn and flow.client_isn != info.tcp_seq:
            self._forget(flow)  # a new connection reusing the 5-tuple, not a SYN retransmission
            flow = None
        elif flow is not None and flow.decided and proto == PROTO_TCP and from_client is not None \
                and not flow.verdict_unsent:
            # Live, the kernel queues only flows its conntrack has not decided, and a TCP
            # flow's mark cannot be lost (its entry was confirmed with the SYN): so this is
            # a new connection on an old 5-tuple, whose SYN the kernel did not queue.
            # (A flow given up between its packets has not told the kernel yet: not this case.)
            self._forget(flow)
            flow = None
        if flow is None:
            flow = self._new_flow(info, is_syn, now, from_client)
            decision = None if flow.is_dns else self._first_packet_decision(flow, proto, now)
            if decision is not None:
                flow.packets = 1
                decided = self._decide(flow, decision)
                return PacketOutcome(decided, [], decided)
        else:
            self._ledger.touch(flow.client_addr, key)
            flow.last_seen = now
            if flow.decided and not flow.is_dns:
                return PacketOutcome(self._unsent_decision(flow), [], flow.decision)

        flow.packets += 1
        learned: list[LearnedAddress] = []
        decision = None
        if info.payload:
            from_client = src == flow.client_addr and sport == flow.client_port
            if flow.is_dns:
                # Every answer teaches addresses (A then AAAA often share one flow),
                # but the flow itself is decided once.
                decision = self._dns_packet(flow, info, learned, now, answer_origin)
                if flow.decided:
                    outcome = PacketOutcome(self._unsent_decision(flow), learned, flow.decision)
                    if not self._forget_if_answered(flow, info, answer_origin, now):
                        self._count_buffers(flow)
                    return outcome
            elif proto == PROTO_TCP and from_client and (flow.want_tls or flow.want_http):
                decision = self._stream_packet(flow, info, now)
            elif proto == PROTO_UDP and from_client and flow.want_tls \
                    and quic_parser.is_long_header_initial_candidate(info.payload):
                decision = self._quic_packet(flow, info, now)
            elif proto == PROTO_TCP and not from_client and (
                    flow.opened_with_tls or (flow.want_tls and flow.want_http and flow.stream is None)):
                # A hello that named no server, or a server heard before its client (one
                # direction of the flow only): the server's certificate names it.
                decision = self._certificate_decision(info.payload)
            # A signature beats a name that matched no app (e.g. Xunlei's POST to an unlisted host).
            if (decision is None or decision.app == UNKNOWN_APP) and self._signatures and not flow.is_dns:
                decision = self._signature_decision(flow, info, proto, from_client, now) or decision
            if decision is None and self._two_way and not flow.is_dns:
                decision = self._two_way_decision(flow, info, proto, from_client)
            if decision is None and self._exchanges and not flow.is_dns:
                decision = self._exchange_decision(flow, info.payload, proto, from_client)
        if decision is None and flow.packets >= self.max_packets:
            decision = self._last_resort(flow, proto)
        if decision is None:
            self._count_buffers(flow)
            if flow.verdict_unsent:  # its own buffers were over budget: given up with this packet
                return PacketOutcome(self._unsent_decision(flow), learned, flow.decision)
            return PacketOutcome(None, learned)
        decided = self._decide(flow, decision)
        if flow.is_dns and not self._forget_if_answered(flow, info, answer_origin, now):
            self._count_buffers(flow)  # a DNS flow keeps its streams: more messages may follow
        return PacketOutcome(decided, learned, decided)

    def _new_flow(self, info: PacketInfo, is_syn: bool, now: float, from_client: bool | None = None) -> _Flow:
        proto = info.proto
        if from_client is not None and not is_syn:
            if from_client:
                flow = _Flow(info.src, info.sport, info.dst, info.dport, True, False, -1, now)
            else:
                flow = _Flow(info.dst, info.dport, info.src, info.sport, True, False, -1, now)
        elif is_syn:
            flow = _Flow(info.src, info.sport, info.dst, info.dport, True, False, info.tcp_seq, now)
        elif proto == PROTO_TCP and info.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
            flow = _Flow(info.dst, info.dport, info.src, info.sport, True, False, -1, now)
        elif info.sport == DNS_PORT and info.dport != DNS_PORT:
            # First packet is a DNS response: the resolver is the server.
            flow = _Flow(info.dst, info.dport, info.src, info.sport, True, False, -1, now)
        else:
            flow = _Flow(info.src, info.sport, info.dst, info.dport, False, False, -1, now)
        flow.is_dns = proto in (PROTO_UDP, PROTO_TCP) and flow.server_port == DNS_PORT
        # The key and the flow share one copy of each value, and share the client's address with
        # its other flows, the server's and a service port with other clients' (~110 bytes a flow).
        ledger = self._ledger
        flow.client_addr = ledger.shared_address(flow.client_addr)
        flow.server_addr = self._server_addresses.share(flow.server_addr, flow.server_addr)
        flow.server_port = _shared_port(flow.server_port)
        flow.key = key = _canonical_key(proto, flow.client_addr, flow.client_port, flow.server_addr,
                                        flow.server_port)
        flows = self._flows
        flows[key] = flow
        self.stats.flows_created += 1
        if ledger.add_flow(flow.client_addr, key) > self.budget.host_flows:
            # Its own oldest flow pays, not the office's oldest.
            self._forget(flows[ledger.oldest_flow(flow.client_addr)])
            self.stats.flows_evicted_host_limit += 1
        while len(flows) > self.max_flows:
            self._forget(flows[ledger.oldest_flow(ledger.heaviest_host())])
            self.stats.flows_evicted += 1
        return flow

    def _first_packet_decision(self, flow: _Flow, proto: int, now: float) -> Decision | None:
        """Address evidence: known on the first packet, so the kernel can stop queueing at once."""
        # A catalog address *and port* (e.g. Meta's STUN port = WhatsApp call) is the
        # most specific, then a catalog network, then what DNS taught (which never
        # holds a catalog address anyway); the kernel's classify chain looks its maps
        # up in the same order.
        address_match = None
        addresses = self._tables.addresses
        for address, port in ((flow.server_addr, flow.server_port), (flow.client_addr, flow.client_port)):
            match = addresses.lookup(address, proto, port)
            if match is not None:
                if match.port_specific:
                    return Decision(match.app, "address", _address_text(address))
                address_match = address_match or (match, address)
            if flow.client_known:
                break
        if address_match is not None:
            return Decision(address_match[0].app, "address", _address_text(address_match[1]))
        candidates = (flow.server_addr,) if flow.client_known else (flow.server_addr, flow.client_addr)
        learned = self._learned
        for address in candidates:
            entry = learned.recall(address, now, forget_expired=True)
            if entry is not None:
                return Decision(entry[0], "dns-learned", entry[1])
        return None

    def _dns_packet(self, flow: _Flow, info: PacketInfo, learned: list[LearnedAddress],
                    now: float, origin: AnswerOrigin) -> Decision | None:
        """Queries are remembered on their flow; answers that match one (or the router's own) teach."""
        from_server = info.sport == DNS_PORT and info.src == flow.server_addr
        decision = None
        for message in self._dns_messages(flow, info, from_server):
            if not from_server:
                if not message.is_response and message.question_name is not None:
                    if flow.dns_question is None:
                        flow.dns_question = message.question_name
                    if flow.dns_queries is None:
                        flow.dns_queries = PendingQueries()
                    flow.dns_queries.add(message.transaction_id, message.question_name,
                                         message.question_type or 0, now)
                continue  # a query: the answer is what teaches
            if not message.is_response:
                continue
            self.dns_stats.answers[self._learn(flow, message, origin, learned, now)] += 1
            if decision is None:
                decision = self._dns_flow_decision(message)
        return decision

    def _forget_if_answered(self, flow: _Flow, info: PacketInfo, origin: AnswerOrigin, now: float) -> bool:
        """Forget a decided DNS flow whose lookups are answered (this packet came from its server): it has
        nothing more to teach, and a host resolving many names would otherwise fill the table (~1.3 KiB
        a flow until it times out). Kept while a query to a named resolver waits for its answer (A and
        AAAA asked at once), or a TCP message is half read. The kernel still queues a named resolver's
        later packets of the 5-tuple (compile/dns_rules.py): a later query makes a new flow, which
        remembers it for its answer; other resolvers' flows are decided in the ct mark, not queued."""
        if not self.forget_answered_lookups or info.sport != DNS_PORT or info.src != flow.server_addr:
            return False
        queries = flow.dns_queries
        if origin is AnswerOrigin.NAMED_RESOLVER and queries is not None and queries.waiting(now):
            return False
        if info.proto == PROTO_TCP and (flow.stream or flow.dns_stream):
            return False
        self._forget(flow)
        self.stats.dns_lookups_done += 1
        return True

    @staticmethod
    def _dns_messages(flow: _Flow, info: PacketInfo, from_server: bool) -> list[dns_parser.DnsMessage]:
        """The whole DNS messages this packet completes: one per UDP datagram; over TCP, each
        length-prefixed message of its direction's stream, the rest kept for the next segment."""
        if info.proto != PROTO_TCP:
            message = dns_parser.parse_dns(info.payload)
            return [] if message is None else [message]
        stream = flow.dns_stream if from_server else flow.stream
        if not isinstance(stream, bytearray):  # none yet: a DNS flow's streams are made here only
            stream = bytearray(stream or b"")
            if from_server:
                flow.dns_stream = stream
            else:
                flow.stream = stream
        if len(stream) + len(info.payload) > MAX_STREAM_BYTES:
            stream.clear()  # a message larger than we read, or a lost segment: start afresh
            return []
        stream += info.payload
        messages = []
        while dns_parser.tcp_message_complete(stream):
            length = 2 + ((stream[0] << 8) | stream[1])
            message = dns_parser.parse_dns_tcp(bytes(stream[:length]))
            del stream[:length]
            if message is not None:
                messages.append(message)
        return messages

    def _learn(self, flow: _Flow, message: dns_parser.DnsMessage, origin: AnswerOrigin,
               learned: list[LearnedAddress], now: float) -> str:
        """Learn what an answer teaches, if it may teach; its result for gatewayd_dns_answers_total."""
        if origin is AnswerOrigin.OTHER:
            return NOT_A_RESOLVER
        if origin is AnswerOrigin.NAMED_RESOLVER:
            queries = flow.dns_queries if flow.dns_queries is not None else PendingQueries()
            unmatched = queries.take(message.transaction_id, message.question_name or "",
                                     message.question_type or 0, now)
            if unmatched is not None:
                return unmatched
        domains, catalog, store = self._tables.domains, self._tables.addresses, self._learned
        refused_counts = self.dns_stats.refused
        named = refused = 0
        for address, ttl, chain in dns_parser.resolve_answers(message):
            found = domains.lookup_any(chain)
            if found is None:
                continue
            named += 1
            name, match = found
            packed = address.packed
            if catalog.lookup(packed) is not None:  # listed without ports: the catalog's say is final
                refused_counts[CATALOG_ADDRESS] += 1
                refused += 1
                continue
            ttl = _clamp_ttl(ttl)
            result = store.learn(packed, match.app, name, flow.client_addr, now + ttl, now)
            if not isinstance(result, Learning):
                refused_counts[result] += 1
                refused += 1
                continue
            learned.append(LearnedAddress(address, match.app, ttl, name, changed=result is Learning.CHANGED))
        if not named:
            return NO_APP
        return REFUSED if refused == named else LEARNED

    def _dns_flow_decision(self, message: dns_parser.DnsMessage) -> Decision:
        return self._dns_name_decision(message.question_name or "")

    def _dns_name_decision(self, name: str) -> Decision:
        tables = self._tables
        if self.dns_flow_takes_queried_app and name:
            match = tables.domains.lookup(name)
            if match is not None and tables.categories.get(match.app) != "dns":
                return Decision(match.app, "dns", name)
        return Decision(DNS_APP if tables.has_app(DNS_APP) else UNKNOWN_APP, "dns", name)

    def _stream_packet(self, flow: _Flow, info: PacketInfo, now: float) -> Decision | None:
        """Reassemble client->server bytes in order and try TLS, then HTTP."""
        payload = self._in_order_bytes(flow, info)
        if payload is None:
            return None
        if flow.stream is None:
            data: bytes | bytearray = payload  # common case: the whole hello in one segment, no copy
        else:
            flow.stream += payload
            data = flow.stream
        decision = None
        if flow.want_tls:
            hello = tls_parser.parse_client_hello(data)
            if hello is tls_parser.NOT_TLS:
                flow.want_tls = False
            elif hello is not tls_parser.NEED_MORE:
                flow.want_tls = flow.want_http = False
                flow.opened_with_tls = True
                decision = self._hello_decision(flow, hello, "tls-sni", PROTO_TCP, now)
        if flow.want_http:
            request = http_parser.parse_request(data)
            if request is http_parser.NOT_HTTP:
                flow.want_http = False
            elif request is not http_parser.NEED_MORE:
                flow.want_tls = flow.want_http = False
                decision = self._http_decision(flow, request, now)
        if not (flow.want_tls or flow.want_http) or len(data) >= MAX_STREAM_BYTES:
            self._stop_reassembly(flow)
        elif flow.stream is None:
            flow.stream = data  # the segment's bytes, kept until the next one completes the hello
        return decision

    def _in_order_bytes(self, flow: _Flow, info: PacketInfo) -> bytes | None:
        """The bytes this segment adds to the end of the client's stream, with any held
        segments it lets follow; None when it adds nothing yet (a retransmission, or a
        segment ahead of a gap, held until the gap fills)."""
        seq = info.tcp_seq
        if info.tcp_flags & TCP_SYN:
            seq = (seq + 1) & _SEQ_MASK  # the SYN takes one sequence number: its data (Fast Open) follows it
        if flow.next_seq < 0:  # no SYN seen (the kernel queues none without data): this segment starts it
            flow.next_seq = seq
        ahead = (seq - flow.next_seq) & _SEQ_MASK
        if 0 < ahead < _SEQ_HALF_SPACE:
            # Reordered, or an earlier segment was lost before it reached us and will be
            # sent again: keep it (within the stream's cap) for when the gap fills.
            self._hold_early_segment(flow, seq, info.payload)
            return None
        payload = _unseen_part(flow.next_seq, seq, info.payload)
        if not payload:
            return None  # a retransmission of bytes already in the stream
        flow.next_seq = (flow.next_seq + len(payload)) & _SEQ_MASK
        early = flow.early_segments
        while early:
            ready = [held_seq for held_seq in early if (held_seq - flow.next_seq) & _SEQ_MASK >= _SEQ_HALF_SPACE
                     or held_seq == flow.next_seq]
            if not ready:
                break
            for held_seq in ready:
                following = _unseen_part(flow.next_seq, held_seq, early.pop(held_seq))
                payload += following
                flow.next_seq = (flow.next_seq + len(following)) & _SEQ_MASK
        if early is not None and not early:
            flow.early_segments = None
        return payload

    def _hold_early_segment(self, flow: _Flow, seq: int, payload: bytes) -> None:
        early = flow.early_segments
        if early is None:
            early = flow.early_segments = {}
        if len(payload) > len(early.get(seq, b"")):
            early[seq] = payload
        held = sum(len(segment) for segment in early.values())
        if held + (len(flow.stream) if flow.stream is not None else 0) > MAX_STREAM_BYTES:
            self._stop_reassembly(flow)  # a gap that never fills: no hello is this large anyway

    @staticmethod
    def _stop_reassembly(flow: _Flow) -> None:
        flow.want_tls = flow.want_http = False
        flow.stream = None
        flow.early_segments = None

    def _quic_packet(self, flow: _Flow, info: PacketInfo, now: float) -> Decision | None:
        """Client Initials of QUIC (want_tls doubles as "still looking for a ClientHello" on UDP)."""
        state = flow.quic
        if state is None:
            state = flow.quic = quic_parser.QuicState()
        hello = quic_parser.feed(state, info.payload)
        if hello is quic_parser.NEED_MORE:
            return None
        flow.want_tls = False
        flow.quic = None
        if hello is quic_parser.NOT_QUIC:
            return None
        version = f"quic-version={hello.version:#010x}"
        tls_view = tls_parser.TlsClientHello(hello.sni, hello.alpn, 0, hello.ech)
        decision = self._hello_decision(flow, tls_view, "quic-sni", PROTO_UDP, now)
        if decision is None:
            return None
        return Decision(decision.app, decision.method, decision.evidence,
                        details=f"{decision.details} {version}".strip())

    def _hello_decision(self, flow: _Flow, hello: tls_parser.TlsClientHello, method: str, proto: int,
                        now: float) -> Decision | None:
        details = "alpn=" + ",".join(hello.alpn) if hello.alpn else ""
        if hello.ech:
            # Encrypted Client Hello: the SNI in clear is only the provider's public name,
            # so what DNS taught about the address comes first.
            fallback = self._address_or_port(flow, proto, now)
            if fallback is not None:
                return Decision(fallback.app, fallback.method, fallback.evidence,
                                details=f"ech outer={hello.sni} {details}".strip())
        if hello.sni:
            if method == "tls-sni" and self._hello_signatures:
                signed = self._hello_signature_decision(flow, hello, now, details)
                if signed is not None:
                    return signed
            return self._name_decision(hello.sni, method, flow, proto, now, details)
        return None

    def _hello_signature_decision(self, flow: _Flow, hello: tls_parser.TlsClientHello, now: float,
                                  details: str) -> Decision | None:
        """A ClientHello of a shape of its own (Tor), when neither its name nor its address names an app."""
        tables = self._tables
        if hello.sni is None or tables.domains.lookup(hello.sni) is not None:
            return None
        if tables.addresses.lookup(flow.server_addr) is not None or self._learned.recall(flow.server_addr, now):
            return None  # an address the catalog lists or DNS taught is that app's, whatever the name
        for name, match, app in self._hello_signatures:
            if match(hello):
                return Decision(app, "signature", name, details=f"sni={hello.sni} {details}".strip())
        return None

    def _certificate_decision(self, payload: bytes) -> Decision | None:
        names = certificates.server_certificate_names(payload)
        if names is None:
            return None
        for name, match, app in self._certificate_signatures:
            if match(names):
                return Decision(app, "signature", name, details=f"issuer={names.issuer_cn}")
        # The name a CA vouched for, as strong as a server name in the hello; no app claims
        # a name that is not a host name ("AnyNet Relay"), so only a catalog domain decides.
        named = self._tables.domains.lookup(names.subject_cn.removeprefix("*.")) if names.subject_cn else None
        if named is not None:
            return Decision(named.app, "tls-cert", names.subject_cn, details=f"issuer={names.issuer_cn}")
        return None

    def _http_decision(self, flow: _Flow, request: http_parser.HttpRequest, now: float) -> Decision | None:
        urls = self._tables.urls
        if urls:
            found = urls.lookup(request.host, request.path)
            if found is not None:
                return Decision(found[0], "http-url", found[1],
                                details=f"host={request.host} path={request.path[:200]}")
        if request.host:
            return self._name_decision(request.host, "http-host", flow, PROTO_TCP, now)
        return None

    def _name_decision(self, name: str, method: str, flow: _Flow | None = None, proto: int = PROTO_TCP,
                       now: float = 0.0, details: str = "") -> Decision:
        match = self._tables.domains.lookup(name)
        if match is not None:
            return Decision(match.app, method, name, details=details)
        if flow is not None:
            # The name says nothing we know (an IP literal, an ECH outer name, a private
            # host): what the address or the port says is better than "unknown".
            fallback = self._address_or_port(flow, proto, now)
            if fallback is not None:
                return Decision(fallback.app, fallback.method, fallback.evidence,
                                details=f"{method}={name}" + (f" {details}" if details else ""))
        # A name that matches no app is still the best evidence there is: decide "unknown" on it.
        return Decision(UNKNOWN_APP, method, name, details=details)

    def _address_or_port(self, flow: _Flow, proto: int, now: float) -> Decision | None:
        match = self._tables.addresses.lookup(flow.server_addr)
        if match is not None:
            return Decision(match.app, "address", _address_text(flow.server_addr))
        entry = self._learned.recall(flow.server_addr, now)
        if entry is not None:
            return Decision(entry[0], "dns-learned", entry[1])
        app = self._tables.ports.lookup(proto, flow.server_port) if flow.client_known else None
        if app is not None:
            return Decision(app, "port", f"{_PROTOCOL_NAMES[proto]}/{flow.server_port}")
        return None

    def _signature_decision(self, flow: _Flow, info: PacketInfo, proto: int, from_client: bool,
                            now: float) -> Decision | None:
        payload = info.payload
        pending = flow.tentative
        if pending is not None and pending.evidence in self._mail_upgrades:
            return self._mail_decision(flow, pending, payload, from_client)
        for name, match, protocols, app in self._signatures:
            if proto in protocols and match(payload, from_client):
                if name in CARRIER_SIGNATURES:
                    return self._carrier_decision(flow, payload, name, app, now)
                if name in self._mail_upgrades and flow.opened_with_tls:
                    # A mail greeting on a session the client opened with TLS (a server that
                    # answers implicit TLS in plaintext): the client asked for the TLS variant.
                    return Decision(self._mail_upgrades[name], "signature", f"{name}+tls")
                if name in self._mail_upgrades and flow.packets < self.max_packets:
                    # A mail session may yet upgrade with STARTTLS: wait for the client's
                    # next commands (within the flow's packet budget: plaintext at its end).
                    flow.tentative = Decision(app, "signature", name)
                    return None
                return Decision(app, "signature", name)
        return None

    def _mail_decision(self, flow: _Flow, pending: Decision, payload: bytes, from_client: bool) -> Decision | None:
        """A plaintext mail session seen: the client's STARTTLS names the TLS variant, another command the plain one."""
        if not from_client:
            return None
        upgrade = sig_services.starttls_command(pending.evidence, payload)
        if upgrade is None:
            return None
        if upgrade:
            return Decision(self._mail_upgrades[pending.evidence], "signature", f"{pending.evidence}+starttls")
        return pending

    def _carrier_decision(self, flow: _Flow, payload: bytes, name: str, generic_app: str,
                          now: float) -> Decision | None:
        """A generic carrier (STUN) matched: its app, when the message or the addresses say it."""
        carried = self._stun_named_app(payload) or self._carried_app(flow, now)
        if carried is not None:
            app = self._tables.call_apps.get(carried[0], carried[0])
            self._remember_call_endpoints(flow, app, now)
            return Decision(app, "signature", name, details=carried[1])
        called = self._call_app(flow, now)
        if called is not None:
            return Decision(called, "signature", name, details="call-endpoint")
        if flow.packets < self.max_packets:
            # Plain STUN says "some call": its later packets often carry the
            # vendor's own attributes (WhatsApp, Teams). Keep looking until then.
            flow.tentative = Decision(generic_app, "signature", name)
            return None
        return Decision(generic_app, "signature", name)

    def _stun_named_app(self, payload: bytes) -> tuple[str, str] | None:
        """(app, evidence) from the message itself: its TURN REALM, or the SOFTWARE naming a calling app."""
        realm, software = sig_calls.stun_names(payload)
        tables = self._tables
        if realm is not None:
            match = tables.domains.lookup(realm)
            if match is not None:
                return match.app, f"realm={realm}"
        if software is not None and tables.categories.get(software) in _CALLING_CATEGORIES:
            return software, f"software={software}"
        return None

    def _remember_call_endpoints(self, flow: _Flow, app: str, now: float) -> None:
        for endpoint in ((flow.client_addr, flow.client_port), (flow.server_addr, flow.server_port)):
            self._call_endpoints.remember(endpoint, app, now + CALL_ENDPOINT_SECONDS)

    def _call_app(self, flow: _Flow, now: float) -> str | None:
        for endpoint in ((flow.client_addr, flow.client_port), (flow.server_addr, flow.server_port)):
            app = self._call_endpoints.recall(endpoint, now)
            if app is not None:
                return app
        return None

    def _carried_app(self, flow: _Flow, now: float) -> tuple[str, str] | None:
        """(app, evidence) of a generic carrier (STUN) from what the addresses say: learned, catalog, named."""
        for address in (flow.server_addr, flow.client_addr):
            match = self._tables.addresses.lookup(address)  # the catalog before what DNS taught
            if match is not None:
                return match.app, f"address={_address_text(address)}"
            entry = self._learned.recall(address, now)
            if entry is not None:
                return entry[0], f"dns-learned={entry[1]}"
        named = self._named_servers.recall((flow.client_addr, flow.server_addr), now)
        if named is not None:
            return named, "server-name"
        return None

    def _two_way_decision(self, flow: _Flow, info: PacketInfo, proto: int, from_client: bool) -> Decision | None:
        payload = info.payload
        side = 1 if from_client else 2
        for name, match, protocols, app in self._two_way:
            if proto in protocols and match(payload, from_client):
                if flow.two_way_seen is None:
                    flow.two_way_seen = {}
                seen = flow.two_way_seen.get(name, 0) | side
                flow.two_way_seen[name] = seen
                if seen == 3:
                    return Decision(app, "signature", name)
        return None

    def _exchange_decision(self, flow: _Flow, payload: bytes, proto: int, from_client: bool) -> Decision | None:
        """The client's first datagram opens an exchange (its token kept); a server answer carrying it decides."""
        if from_client:
            if flow.packets == 1:
                for name, opening, _answer, protocols, _app in self._exchanges:
                    token = opening(payload) if proto in protocols else None
                    if token is not None:
                        if flow.exchange_tokens is None:
                            flow.exchange_tokens = {}
                        flow.exchange_tokens[name] = token
            return None
        tokens = flow.exchange_tokens
        if tokens:
            for name, _opening, answer, _protocols, app in self._exchanges:
                token = tokens.get(name)
                if token is not None and answer(payload, token):
                    return Decision(app, "signature", name)
            flow.exchange_tokens = None  # the server's first answer did not echo: no exchange
        return None

    def _last_resort(self, flow: _Flow, proto: int) -> Decision:
        if flow.tentative is not None:
            return flow.tentative
        if flow.is_dns and flow.dns_question:  # a lookup that was never answered still names its app
            return self._dns_name_decision(flow.dns_question)
        if proto == PROTO_UDP:
            # Nothing else named it: a UDP socket that just carried a call (to the vendor's relay,
            # named by its STUN or its network) carries the same call's peer-to-peer media.
            called = self._call_app(flow, flow.last_seen)
            if called is not None:
                return Decision(called, "address", "call-endpoint")
            media = self._named_server_media(flow)
            if media is not None:
                return media
        ports = self._tables.ports
        protocol_name = _PROTOCOL_NAMES.get(proto)
        if protocol_name is not None:
            candidates = (flow.server_port,) if flow.client_known else (flow.server_port, flow.client_port)
            for port in candidates:
                app = ports.lookup(proto, port)
                if app is not None:
                    return Decision(app, "port", f"{protocol_name}/{port}")
        return Decision(UNKNOWN_APP, "give-up", f"{protocol_name or proto}/{flow.server_port}")

    def _named_server_media(self, flow: _Flow) -> Decision | None:
        """A UDP flow nothing named, to the very server this client reached by name over TLS/QUIC moments
        before, when that name is a calling or office app's: the call's media on its server. Tencent's RTC
        (Tencent Meeting's media) publishes no address list, only ports (TCP 443; UDP 8000, 8080, 8800, 843,
        443, 16285): the server the client just named is the evidence. Other apps' servers, and DNS, say
        nothing: a web server's address carries no UDP of its own."""
        if flow.server_port == DNS_PORT:
            return None
        named = self._named_servers.recall((flow.client_addr, flow.server_addr), flow.last_seen)
        if named is None or self._tables.categories.get(named) not in _MEDIA_CATEGORIES:
            return None
        return Decision(self._tables.call_apps.get(named, named), "address", "named-server")

    def _decide(self, flow: _Flow, decision: Decision) -> Decision:
        flow.decision = decision = self._shared_decision(decision)
        if decision.app in self._call_apps and flow.server_port != DNS_PORT:
            self._remember_call_endpoints(flow, decision.app, flow.last_seen)
        if decision.method in _SERVER_NAME_METHODS and decision.app != UNKNOWN_APP:
            self._named_servers.remember((flow.client_addr, flow.server_addr), decision.app,
                                         flow.last_seen + NAMED_SERVER_SECONDS)
        if not flow.is_dns:  # a DNS flow reads its later queries and answers from its streams
            self._free_buffers(flow)
        self.stats.decisions += 1
        return decision

    def _shared_decision(self, decision: Decision) -> Decision:
        """An equal decision made before, if one is at hand: flows to the same site or port share one
        (Decision and evidence ~120 bytes a decided flow otherwise)."""
        # details too: equality leaves them out, and a shared decision must say all this one says
        return self._decisions.share((decision.app, decision.method, decision.evidence, decision.details),
                                     decision)

    # ------------------------------------------------------- memory per host

    def _free_buffers(self, flow: _Flow) -> None:
        flow.stream = None
        rarities = flow.rarities
        if rarities is not None:
            rarities.early_segments = rarities.dns_stream = rarities.quic = None
        if flow.held:
            self._ledger.set_held(flow.client_addr, flow.key, flow.held, 0)
            flow.held = 0

    def _count_buffers(self, flow: _Flow) -> None:
        """Bring the ledger up to date with the flow's buffers after a packet; enforce the budgets."""
        held = _buffered_bytes(flow)
        if held == flow.held:
            return
        grew = held > flow.held
        self._ledger.set_held(flow.client_addr, flow.key, flow.held, held)
        flow.held = held
        if grew:
            self._enforce_buffer_budgets(flow.client_addr)

    def _enforce_buffer_budgets(self, host: bytes) -> None:
        # The host that grew pays first with its own oldest buffers; only then, if all
        # hosts together are over, the oldest anywhere (an honest ClientHello completes
        # within a round trip, so the oldest buffers are the ones never finished).
        ledger, budget, flows = self._ledger, self.budget, self._flows
        while ledger.host_buffered_bytes(host) > budget.host_bytes:
            if self._give_up(flows[ledger.oldest_buffering_of(host)]):
                self.stats.flows_given_up_host_budget += 1
        while ledger.buffered_bytes > budget.total_bytes:
            if self._give_up(flows[ledger.oldest_buffering()]):
                self.stats.flows_given_up_total_budget += 1

    def _give_up(self, flow: _Flow) -> bool:
        """Free a flow's buffers; undecided, it gets the verdict `max_packets` would have given it (True).

        The verdict reaches the kernel with the flow's next queued packet (the
        kernel then stops queueing it); a flow that sends nothing more needs none.
        """
        if flow.decided:  # a DNS-over-TCP flow keeps reading answers after its decision
            self._free_buffers(flow)
            return False
        self._decide(flow, self._last_resort(flow, flow.key[0]))
        self._free_buffers(flow)  # _decide keeps a DNS flow's streams; over budget they go
        flow.verdict_unsent = True
        return True

    @staticmethod
    def _unsent_decision(flow: _Flow) -> Decision | None:
        """The decision made between the flow's packets, once: this packet takes it to the kernel."""
        if not flow.verdict_unsent:
            return None
        flow.verdict_unsent = False
        return flow.decision

    def _forget(self, flow: _Flow) -> None:
        del self._flows[flow.key]
        self._ledger.remove_flow(flow.client_addr, flow.key, flow.held)

    def _expire(self, now: float) -> None:
        self._last_expiry = now
        flows, ledger = self._flows, self._ledger
        oldest_allowed = now - self.flow_timeout
        # A host's flows are in the ledger least recently active first: its sweep stops at the
        # first one still live. One look per host a second (~0.2 ms for 1,000 hosts).
        for host in ledger.hosts():
            while ledger.has_flows(host):
                flow = flows[ledger.oldest_flow(host)]
                if flow.last_seen >= oldest_allowed:
                    break
                self._forget(flow)
                self.stats.flows_expired += 1
