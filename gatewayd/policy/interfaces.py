"""The `interfaces` section: LAN port(s), WAN port, and the WAN link's real rates.

    interfaces: { lan: [lan0], wan: wan0, upload: 20mbit, download: 50mbit }

With a `links:` section (policy/links.py) the WAN ports and rates belong to the
links, and this section names only the LAN ports: `interfaces: { lan: [lan0] }`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gatewayd.policy.fields import (
    INTERFACE_PATTERN,
    RATE_PATTERN,
    check_interface_name,
    parse_rate,
)
from gatewayd.policy.model import Direction, Interfaces, WanLink
from gatewayd.policy.schema_parts import (
    Schema,
    object_schema,
    one_or_list,
    string_schema,
)
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    is_empty,
    text_list_of,
    text_of,
)

INTERFACE_KEYS = ("lan", "wan", "upload", "download")
WAN_KEYS = ("wan", "upload", "download")


def read_interfaces(entry: Entry, checker: Checker, with_links: bool = False) -> Interfaces | None:
    """The section; with `links:` in the policy, only the LAN ports (wan "" and rates 0 until
    the loader fills them in from the links, see links_in_interfaces)."""
    required = ("lan",) if with_links else INTERFACE_KEYS
    known = checked_mapping(entry.value, checker, "'interfaces'", INTERFACE_KEYS, required, owner=entry.key)
    if known is None:
        return None
    issues_before = len(checker.issues)
    lan = _lan_names(known, checker)
    if with_links:
        for key in WAN_KEYS:
            if key in known:
                checker.report(known[key].key, f"'{key}' of 'interfaces' belongs to each link when the policy has "
                                               "'links' (give every link its interface, upload and download)")
        if len(checker.issues) > issues_before:
            return None
        return Interfaces(tuple(lan), "", 0, 0, checker.location(entry.key))
    wan = None
    if "wan" in known:
        wan_text = text_of(known["wan"].value, checker, "'wan' of 'interfaces'")
        wan = field_at(checker, known["wan"].value, check_interface_name, wan_text) if wan_text else None
        if wan is not None and wan in lan:
            checker.report(known["wan"].value, f"interface '{wan}' cannot be both lan and wan")
    upload = _link_rate(known, "upload", checker)
    download = _link_rate(known, "download", checker)
    if len(checker.issues) > issues_before or wan is None or upload is None or download is None:
        return None
    return Interfaces(tuple(lan), wan, upload, download, checker.location(entry.key))


def _lan_names(known: dict[str, Entry], checker: Checker) -> list[str]:
    if "lan" not in known:
        return []
    names: list[str] = []
    items = text_list_of(known["lan"].value, checker, "'lan' of 'interfaces'")
    if is_empty(known["lan"].value):
        checker.report(known["lan"].value, "'lan' of 'interfaces' is empty (expected an interface name or a list)")
    for item, text in items:
        name = field_at(checker, item, check_interface_name, text)
        if name in names:
            checker.report(item, f"interface '{name}' is listed twice in 'lan'")
        elif name is not None:
            names.append(name)
    return names


def _link_rate(known: dict[str, Entry], key: str, checker: Checker) -> int | None:
    if key not in known:
        return None
    node = known[key].value
    text = text_of(node, checker, f"'{key}' of 'interfaces'")
    return field_at(checker, node, parse_rate, text) if text is not None else None


@dataclass(frozen=True)
class Link:
    """The WAN link's rates, when the interfaces section parsed."""

    upload_bps: int
    download_bps: int

    def directions(self) -> tuple[tuple[Direction, int], ...]:
        return (("upload", self.upload_bps), ("download", self.download_bps))


def links_in_interfaces(interfaces: Interfaces, links: tuple[WanLink, ...]) -> Interfaces:
    """`interfaces` of a policy with several links: the first link stands for "the WAN" where one
    is still meant (the LAN guard's SYN proxy, the forwarding health check); upload is the
    smallest link's, so class and group rates are checked against the tightest tree (each
    link has its own upload tree, compile/tc_tree.py); LAN egress carries every link's download."""
    return replace(interfaces, wan=links[0].interface, upload_bps=min(link.upload_bps for link in links),
                   download_bps=sum(link.download_bps for link in links))


def link_of(interfaces: Interfaces | None) -> Link | None:
    return Link(interfaces.upload_bps, interfaces.download_bps) if interfaces else None


def interfaces_schema() -> Schema:
    interface = string_schema("A Linux interface name.", pattern=INTERFACE_PATTERN)
    rate = string_schema("WAN link rate: a number with bit, kbit, mbit or gbit (SI units).", pattern=RATE_PATTERN)
    return object_schema(
        "The gateway's interfaces and the WAN link's real speed.",
        {
            "lan": one_or_list(interface, "Office-side interface, or a list of them."),
            "wan": interface | {"description": "Internet-side interface (with 'links', each link names its own)."},
            "upload": rate | {"description": "WAN egress rate, e.g. 20mbit."},
            "download": rate | {"description": "WAN ingress (LAN egress) rate, e.g. 50mbit."},
        },
        ("lan",),
    )
