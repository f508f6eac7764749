"""The validated policy: plain, immutable data.

The loader (policy/loader.py) turns a YAML file into these objects, or into a
list of errors with FILE:LINE:COL; nothing downstream ever sees raw YAML.
Every object that an admin wrote keeps its `Location`, so later stages
(compile, explain, metrics) can point back at the line that caused them.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from gatewayd.policy.app_tree import children_index, with_descendants

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface  # an address with its prefix length

# Fixed so metrics labels stay bounded and policies stay portable.
CATEGORIES: tuple[str, ...] = (
    "im", "voice-video", "office", "erp-crm-oa", "mail", "vpn", "remote",
    "video", "music", "social", "game", "p2p", "stock", "shopping", "news",
    "cloud-storage", "ads", "update", "web", "network", "dns", "unknown",
)

# The payload signatures an application may name. The classifier implements them
# (classify/signatures.py, which checks at import that its registry is exactly this
# list); the vocabulary lives here so validating a policy never asks the classifier.
SIGNATURE_NAMES: tuple[str, ...] = (
    "bittorrent", "ssh", "edonkey", "edonkey_udp", "gnutella", "thunder", "pplive",
    "openvpn", "wireguard", "stun", "stun_msteams", "stun_whatsapp", "rdp", "teamviewer",
    "smtp", "imap", "pop3", "pptp", "ipsec", "esp", "l2tp", "whatsapp", "dropbox_lansync",
    "spotify_discovery", "steam", "source_engine", "gnutella_udp", "qq", "stun_zoom", "stun_googlecall",
    "sd_rtn", "tor", "ppstream", "tencent_tgcp", "alicloud", "xiaomi_push",
    "wechat_mmtls", "epicgames", "anydesk", "dingtalk", "aliwangwang", "zoom_media", "zoom_p2p",
)

Action = Literal["allow", "block"]
FailMode = Literal["open", "closed"]
Protocol = Literal["tcp", "udp"]
# Each Literal's values, for readers to check text against (fields.literal_of) and schemas to list.
ACTIONS: tuple[Action, ...] = ("allow", "block")
FAIL_MODES: tuple[FailMode, ...] = ("open", "closed")
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Bandwidth:
    """A rate in the policy: either a share of the link or an absolute rate."""

    bits_per_second: int | None = None
    share: float | None = None  # 0 < share <= 1

    def resolve(self, link_bits_per_second: int) -> int:
        if self.bits_per_second is not None:
            return self.bits_per_second
        assert self.share is not None
        return int(link_bits_per_second * self.share)


@dataclass(frozen=True)
class Interfaces:
    lan: tuple[str, ...]
    wan: str
    upload_bps: int  # WAN egress
    download_bps: int  # LAN egress
    location: Location | None = None


@dataclass(frozen=True)
class LinkProbe:
    """How gatewayd checks a WAN link (policy/links.py): targets reached over that link only.

    A round sends one probe to every target and succeeds when any target answers
    within `timeout_ms`. `fall` failed rounds in a row take the link down (no new
    connections, its connections ended); `rise` good rounds in a row bring it back.
    `max_loss` / `max_latency_ms` judge the last QUALITY_WINDOW rounds: a link
    over either threshold counts as failing too.
    """

    icmp: tuple[IPAddress, ...] = ()
    tcp: tuple[tuple[IPAddress, int], ...] = ()  # (address, port); a refused connection is an answer
    dns: tuple[IPAddress, ...] = ()  # any answer to a query for the root's NS records
    interval_ms: int = 500
    timeout_ms: int = 500
    fall: int = 3
    rise: int = 5
    max_loss: float | None = None  # 0..1 over the window
    max_latency_ms: int | None = None  # mean RTT of the window's answered rounds

    def targets(self) -> int:
        return len(self.icmp) + len(self.tcp) + len(self.dns)


@dataclass(frozen=True)
class WanLink:
    """One Internet line (`links:` section, policy/links.py), or the one implicit link of
    `interfaces.wan` in a policy without that section (`implicit`)."""

    name: str
    interface: str
    upload_bps: int
    download_bps: int
    weight: int = 1  # share of new connections: weight / sum of the up links' weights
    gateway: IPAddress | None = None  # IPv4 next hop; None for a point-to-point link (PPPoE)
    probe: LinkProbe | None = None  # None: never probed, always counted up
    location: Location | None = None
    implicit: bool = False
    gateway6: IPAddress | None = None  # IPv6 next hop (link-local allowed); None: IPv6 is not routed over this link

    @property
    def carries_ipv6(self) -> bool:
        return self.gateway6 is not None


@dataclass(frozen=True)
class LinkPin:
    """`link_pins:` (policy/link_pins.py): matching new connections go out over the first
    up link of `links`; first matching pin wins; none up -> the weighted balance.

    All given criteria must match (source in `groups`, app in `apps`/`categories`,
    destination in `destinations`); empty criteria match anything.
    """

    name: str
    links: tuple[str, ...]
    groups: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    destinations: tuple[IPNetwork, ...] = ()
    location: Location | None = None


@dataclass(frozen=True)
class Tunnel:
    """`tunnels:` (policy/tunnels.py): a site-to-site tunnel counted as an office port; its inner
    packets are shaped on `interface` at `share` of link `over`'s upload, its outer UDP flow
    (`port`) goes into `qos_class` on that link."""

    name: str
    interface: str
    networks: tuple[IPNetwork, ...]
    over: str  # a WanLink name
    share: float  # 0 < share <= 1
    port: int
    qos_class: str
    location: Location | None = None


@dataclass(frozen=True)
class HourRange:
    start_minute: int  # minutes after local midnight, 0..1439
    end_minute: int  # exclusive, 1..1440; end < start means "crosses midnight"


@dataclass(frozen=True)
class Schedule:
    name: str
    days: frozenset[int]  # 0 = Monday .. 6 = Sunday
    hours: tuple[HourRange, ...]  # empty = all day
    location: Location | None = None


@dataclass(frozen=True)
class AddressRange:
    first: IPAddress
    last: IPAddress


Direction = Literal["upload", "download"]
DIRECTIONS: tuple[Direction, ...] = ("upload", "download")


@dataclass(frozen=True)
class RatePair:
    """A guaranteed rate and a ceiling for one direction; None = not written (the default applies)."""

    guaranteed: Bandwidth | None = None
    limit: Bandwidth | None = None
    guaranteed_location: Location | None = None
    limit_location: Location | None = None


@dataclass(frozen=True)
class Rates:
    """Rates per direction of the WAN link; a direction left out is not shaped at this level."""

    upload: RatePair | None = None
    download: RatePair | None = None
    location: Location | None = None

    def direction(self, direction: Direction) -> RatePair | None:
        return self.upload if direction == "upload" else self.download


@dataclass(frozen=True)
class HostException:
    """One host whose per-host rates differ from its group's."""

    address: IPAddress
    rates: Rates
    location: Location | None = None


@dataclass(frozen=True)
class GroupQos:
    """Bandwidth of a group as a whole, of each of its hosts, and connection caps per host."""

    bandwidth: Rates | None = None  # shared by the whole group
    per_host: Rates | None = None  # each host's own ("elastic") minimum and maximum
    exceptions: tuple[HostException, ...] = ()
    max_connections: int | None = None  # concurrent connections per host
    location: Location | None = None  # where the group's QoS keys start, for errors

    @property
    def shaped(self) -> bool:
        """The group gets a subtree of its own in the HTB trees."""
        return self.bandwidth is not None or self.per_host is not None or bool(self.exceptions)


@dataclass(frozen=True)
class Group:
    name: str
    networks: tuple[IPNetwork, ...] = ()
    ranges: tuple[AddressRange, ...] = ()
    macs: tuple[str, ...] = ()  # lowercase aa:bb:cc:dd:ee:ff
    description: str = ""
    location: Location | None = None
    qos: GroupQos = field(default_factory=GroupQos)


@dataclass(frozen=True)
class PortMatch:
    protocol: Protocol
    first: int
    last: int  # == first for a single port


@dataclass(frozen=True)
class NetworkOnPorts:
    """A server network that names the app only on its own ports ("8.8.8.8 tcp/443 udp/443"):
    a public resolver's DoH port, while its other ports (53) say nothing of the app."""

    network: IPNetwork
    ports: tuple[PortMatch, ...]


@dataclass(frozen=True)
class Application:
    """One application: what it is and the evidence that identifies it.

    Matching: a flow belongs to the app if its server name (DNS answer, TLS SNI,
    HTTP Host) matches one of `domains`, or its server address lies in
    `networks` (and, when `ports` is also given, its server port is in
    `ports`), or in one of `networks_on_ports` on that network's own ports, or
    a named payload `signature` matches. An app with `ports` and no `networks`
    matches on the port alone, as the weakest evidence.
    Domain patterns: "example.com" matches that name and every subdomain;
    "*.example.com" only subdomains; "=example.com" only the exact name.
    """

    id: str  # lowercase, nDPI's name where nDPI has one
    name: str
    category: str  # one of CATEGORIES
    domains: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    ports: tuple[PortMatch, ...] = ()
    signatures: tuple[str, ...] = ()
    builtin: bool = True
    location: Location | None = None
    # Plain-HTTP URL rules: "HOST/PATH-PREFIX" (HOST a domain pattern or "*"), and words
    # searched in the request path. They beat the Host's own app (URL filtering).
    urls: tuple[str, ...] = ()
    url_keywords: tuple[str, ...] = ()
    # The app this one is part of (instagram -> facebook): rules on the parent match it too.
    parent: str | None = None
    networks_on_ports: tuple[NetworkOnPorts, ...] = ()


@dataclass(frozen=True)
class QosClass:
    name: str
    priority: int  # 0 = most urgent .. 7
    guaranteed: Bandwidth
    limit: Bandwidth
    location: Location | None = None
    upload: RatePair | None = None  # overrides of guaranteed/limit for one direction
    download: RatePair | None = None

    def rates(self, direction: Direction) -> tuple[Bandwidth, Bandwidth]:
        """(guaranteed, limit) in `direction`, its override applied."""
        override = self.upload if direction == "upload" else self.download
        if override is None:
            return self.guaranteed, self.limit
        return override.guaranteed or self.guaranteed, override.limit or self.limit


@dataclass(frozen=True)
class Rule:
    """Ordered; the first rule that matches a flow decides it.

    Empty `groups` means any source. `apps` and `categories` together form one
    set of apps; both empty means any app (also not-yet-classified flows).
    """

    name: str
    action: Action
    qos_class: str | None  # class for allowed flows; None = policy default class
    groups: tuple[str, ...] = ()
    except_groups: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    schedule: str | None = None
    location: Location | None = None


DEFAULT_METRICS_LISTEN = "127.0.0.1:9108"
DEFAULT_TOP_TALKERS = 20


@dataclass(frozen=True)
class MetricsSettings:
    """The `metrics` section (parsed by policy/metrics.py).

    `top_talkers` bounds the per-address series: only that many hosts (the ones that moved
    the most bytes) are exported with their address as a label.
    """

    listen: str = DEFAULT_METRICS_LISTEN
    top_talkers: int = DEFAULT_TOP_TALKERS


@dataclass(frozen=True)
class DnsSettings:
    """The `dns` section (parsed by policy/dns.py): the resolvers the office is told to use.

    Empty `resolvers` means the office resolves through the router itself only.
    Only their answers (and the router's own) teach addresses (compile/dns_rules.py);
    connection caps do not count DNS to these resolvers (compile/qos_rules.py).
    """

    resolvers: tuple[IPAddress, ...] = ()
    location: Location | None = None


@dataclass(frozen=True)
class ClassifierSettings:
    fail_mode: FailMode = "open"
    max_packets: int = 8  # packets of a flow the kernel queues before giving up
    queue_num: int = 0
    tcp_only: tuple[str, ...] = ()  # apps / categories whose UDP (QUIC) is blocked, so they fall back to TCP
    # Packets per second one LAN host may have queued (its flows' first packets, both directions);
    # above it they pass unclassified, so one host's flood cannot delay everyone's verdicts. 0: no limit.
    host_queue_rate: int = 2000


@dataclass(frozen=True)
class Policy:
    source: str  # file the policy came from
    interfaces: Interfaces
    schedules: dict[str, Schedule]
    groups: dict[str, Group]  # in file order
    applications: dict[str, Application]  # built-in catalog merged with the policy's own
    classes: dict[str, QosClass]  # in file order
    rules: tuple[Rule, ...]
    default_action: Action = "allow"
    default_class: str = "default"
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    security: SecurityPolicy | None = None  # the LAN guard; None = no guard tables
    health: HealthChecks | None = None  # checked after `gatewayd apply`; see policy/health.py
    dns: DnsSettings = field(default_factory=DnsSettings)  # the office's resolvers; see policy/dns.py
    links: tuple[WanLink, ...] = ()  # WAN lines in file order; () = only interfaces.wan (see wan_links)
    link_pins: tuple[LinkPin, ...] = ()
    tunnels: tuple[Tunnel, ...] = ()
    ha: HaPair | None = None  # two gateways, one office (keepalived + conntrackd); see policy/ha.py
    # SHA-256 of the text this policy was loaded from (UTF-8), set by the loader: the HA peers compare
    # it, and it must be the policy in force, not whatever the file holds by the time it is adopted.
    content_sha256: str = field(default="", compare=False)

    def office_ports(self) -> tuple[str, ...]:
        """Interfaces whose traffic is the office's own: the LAN ports and the tunnels to branches."""
        return (*self.interfaces.lan, *(tunnel.interface for tunnel in self.tunnels))

    def wan_links(self) -> tuple[WanLink, ...]:
        """The policy's links, or the one implicit link of interfaces.wan."""
        if self.links:
            return self.links
        return (WanLink("wan", self.interfaces.wan, self.interfaces.upload_bps, self.interfaces.download_bps,
                        location=self.interfaces.location, implicit=True),)

    @property
    def multi_link(self) -> bool:
        """The policy has a `links:` section: gatewayd routes, balances and fails over."""
        return bool(self.links)

    def apps_of_pin(self, pin: LinkPin) -> frozenset[str]:
        wanted = set(pin.apps)
        if pin.categories:
            wanted.update(a.id for a in self.applications.values() if a.category in pin.categories)
        return with_descendants(wanted, self.applications, self._app_children)

    @property
    def metrics_listen(self) -> str:
        return self.metrics.listen
    def apps_of_rule(self, rule: Rule) -> frozenset[str]:
        """The app ids a rule names, its categories expanded, with every sub-app of those (app_tree)."""
        wanted = set(rule.apps)
        if rule.categories:
            wanted.update(a.id for a in self.applications.values() if a.category in rule.categories)
        return with_descendants(wanted, self.applications, self._app_children)

    @functools.cached_property
    def _app_children(self) -> dict[str, tuple[str, ...]]:
        return children_index(self.applications)


# --- the LAN guard (`security` section; parsed by policy/security.py) ---

UnboundAction = Literal["allow", "drop"]
RateUnit = Literal["second", "minute"]
UNBOUND_ACTIONS: tuple[UnboundAction, ...] = ("allow", "drop")
RATE_UNITS: tuple[RateUnit, ...] = ("second", "minute")


@dataclass(frozen=True)
class Binding:
    """One IP-MAC pair: frames and ARP from `address` must come from `mac`."""

    address: IPAddress
    mac: str  # lowercase aa:bb:cc:dd:ee:ff
    location: Location | None = None


@dataclass(frozen=True)
class BindingTable:
    static: tuple[Binding, ...] = ()  # inline pairs, then the file's, in order
    learn: bool = False  # also bind what the neighbour table holds at start and reload
    unbound: UnboundAction = "allow"  # frames from addresses bound to nothing
    file: FileReference | None = None  # the bindings file, as loaded


@dataclass(frozen=True)
class FileReference:
    """A file the policy names, with what was read from it: a copy of the policy (last-known-good)
    must keep the file too, and point at it (the reference's value spans start..end, 0-based
    (line, column) in the policy text)."""

    path: str  # resolved: relative names are relative to the policy file
    text: str
    start: tuple[int, int]
    end: tuple[int, int]


@dataclass(frozen=True)
class RateLimit:
    """Per source address: `count` packets per `unit`, and `burst` packets above that."""

    count: int
    unit: RateUnit
    burst: int


@dataclass(frozen=True)
class FloodLimits:
    syn: RateLimit | None = None
    udp: RateLimit | None = None
    icmp_echo: RateLimit | None = None
    new_connections: RateLimit | None = None

    def any(self) -> bool:
        return any((self.syn, self.udp, self.icmp_echo, self.new_connections))


@dataclass(frozen=True)
class ScanDefence:
    """A source touching more than `ports` distinct ports or `hosts` distinct hosts in
    `window_seconds` goes on the blocklist for `block_seconds`; `allow` is exempt."""

    ports: int | None
    hosts: int | None
    window_seconds: int
    block_seconds: int
    allow: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class SecurityPolicy:
    bindings: BindingTable | None = None
    anti_spoofing: bool = False
    flood: FloodLimits = field(default_factory=FloodLimits)
    scan: ScanDefence | None = None
    location: Location | None = None
    syn_proxy_ports: tuple[int, ...] = ()  # TCP ports of services exposed to the WAN, behind a SYN proxy


# --- post-change checks (`health` section; parsed by policy/health.py) ---


@dataclass(frozen=True)
class HealthChecks:
    dns_server: str | None = None
    dns_name: str | None = None
    probes: tuple[tuple[str, int], ...] = ()  # (address, port)


# --- the high-availability pair (`ha` section; parsed by policy/ha.py) ---


@dataclass(frozen=True)
class HaNode:
    """One gateway of the pair. Both run the same policy; each finds itself by name."""

    name: str
    priority: int  # VRRP priority, 1..254: the higher one is master when both start
    sync_address: IPAddress  # its own address on the sync link (conntrackd and gatewayd talk there)
    location: Location | None = None


@dataclass(frozen=True)
class HaPair:
    nodes: tuple[HaNode, HaNode]  # in file order
    sync_interface: str  # the dedicated link between the two boxes
    lan_addresses: tuple[IPInterface, ...]  # the office's default gateway, moved to the master
    wan_addresses: tuple[IPInterface, ...]  # the WAN side's addresses, moved with them
    router_id: int  # VRRP virtual router id of the LAN instance; the WAN instance uses router_id + 1
    advert_centiseconds: int  # VRRP advertisement interval; the backup takes over after ~3 of them
    preempt_delay_seconds: int | None = None  # None = a returning node never takes over by itself
    location: Location | None = None

    def node(self, name: str) -> HaNode | None:
        return next((node for node in self.nodes if node.name == name), None)

    def peer_of(self, name: str) -> HaNode:
        return next(node for node in self.nodes if node.name != name)

    @property
    def lan_link_local(self) -> ipaddress.IPv6Interface | None:
        """The LAN's link-local virtual address, the source of the master's router advertisements
        (policy/ha.py adds fe80::1/64 to a LAN with IPv6); None on an IPv4-only LAN."""
        return next((address for address in self.lan_addresses
                     if isinstance(address, ipaddress.IPv6Interface) and address.ip.is_link_local), None)
