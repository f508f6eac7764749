"""The validated policy: plain, immutable data.

The loader (policy/loader.py) turns a YAML file into these objects, or into a
list of errors with FILE:LINE:COL; nothing downstream ever sees raw YAML.
Every object that an admin wrote keeps its `Location`, so later stages
(compile, explain, metrics) can point back at the line that caused them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Fixed so metrics labels stay bounded and policies stay portable.
CATEGORIES: tuple[str, ...] = (
    "im", "voice-video", "office", "erp-crm-oa", "mail", "vpn", "remote",
    "video", "music", "social", "game", "p2p", "stock", "shopping", "news",
    "cloud-storage", "ads", "update", "web", "network", "dns", "unknown",
)

Action = Literal["allow", "block"]
FailMode = Literal["open", "closed"]
Protocol = Literal["tcp", "udp"]


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


@dataclass(frozen=True)
class Group:
    name: str
    networks: tuple[IPNetwork, ...] = ()
    ranges: tuple[AddressRange, ...] = ()
    macs: tuple[str, ...] = ()  # lowercase aa:bb:cc:dd:ee:ff
    description: str = ""
    location: Location | None = None


@dataclass(frozen=True)
class PortMatch:
    protocol: Protocol
    first: int
    last: int  # == first for a single port


@dataclass(frozen=True)
class Application:
    """One application: what it is and the evidence that identifies it.

    Matching: a flow belongs to the app if its server name (DNS answer, TLS SNI,
    HTTP Host) matches one of `domains`, or its server address lies in
    `networks` (and, when `ports` is also given, its server port is in
    `ports`), or a named payload `signature` matches. An app with only `ports`
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


@dataclass(frozen=True)
class QosClass:
    name: str
    priority: int  # 0 = most urgent .. 7
    guaranteed: Bandwidth
    limit: Bandwidth
    location: Location | None = None


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


@dataclass(frozen=True)
class ClassifierSettings:
    fail_mode: FailMode = "open"
    max_packets: int = 8  # packets of a flow the kernel queues before giving up
    queue_num: int = 0


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
    metrics_listen: str = "127.0.0.1:9108"

    def apps_of_rule(self, rule: Rule) -> frozenset[str]:
        """The app ids a rule names, its categories expanded."""
        wanted = set(rule.apps)
        if rule.categories:
            wanted.update(a.id for a in self.applications.values() if a.category in rule.categories)
        return frozenset(wanted)
