"""Bandwidth in the policy beyond a class's own line: per direction, per group, per host, connection caps.

The same small grammar is used everywhere a rate pair is written:

    { guaranteed: 20%, limit: 50mbit }                        both directions
    { limit: 2mbit, download: { guaranteed: 256kbit } }       top level for both, then per direction
    { upload: { limit: 1mbit }, download: { limit: 2mbit } }  one direction each

Shares ("20%") are of the link in that direction. This module parses and
checks what can be checked from one group alone; `check_qos_budgets` then
checks the whole policy against the link (sums of guarantees, per-host limits
under their group's ceiling).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from yaml.nodes import Node

from gatewayd.policy.fields import (
    format_rate,
    parse_bandwidth,
    parse_network,
    percent_text,
)
from gatewayd.policy.model import (
    DIRECTIONS,
    Bandwidth,
    Direction,
    Group,
    GroupQos,
    HostException,
    IPAddress,
    Location,
    QosClass,
    RatePair,
    Rates,
)
from gatewayd.policy.schema_parts import (
    BANDWIDTH_PATTERN,
    Schema,
    object_schema,
    string_schema,
)
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    check_keys,
    checked_mapping,
    field_at,
    integer_of,
    mapping_entries,
    text_of,
)

PAIR_KEYS = ("guaranteed", "limit")
RATES_KEYS = ("guaranteed", "limit", "upload", "download")
GROUP_QOS_KEYS = ("bandwidth", "per_host", "exceptions", "max_connections")
CLASS_DIRECTION_KEYS = ("upload", "download")
MAX_CONNECTIONS = 1_000_000
# Per-host limits get one HTB class per address: the tc minor space (16 bits) bounds them.
MAX_HOSTS_PER_GROUP = 16_384
MAX_LIMITED_HOSTS = 60_000
SHARE_TOLERANCE = 1e-9


def describe(bandwidth: Bandwidth) -> str:
    return percent_text(bandwidth.share) if bandwidth.share is not None else format_rate(bandwidth.bits_per_second or 0)


# --- parsing -----------------------------------------------------------------------------

def _bandwidth_at(entry: Entry, checker: Checker, what: str) -> Bandwidth | None:
    text = text_of(entry.value, checker, f"'{entry.name}' of {what}")
    return field_at(checker, entry.value, parse_bandwidth, text) if text is not None else None


def read_rate_pair(node: Node, checker: Checker, what: str) -> RatePair | None:
    """`{guaranteed: X, limit: Y}`, either key optional."""
    known = checked_mapping(node, checker, what, PAIR_KEYS)
    if known is None:
        return None
    return _pair_of(known, checker, what)


def _pair_of(known: dict[str, Entry], checker: Checker, what: str) -> RatePair | None:
    issues_before = len(checker.issues)
    guaranteed = _bandwidth_at(known["guaranteed"], checker, what) if "guaranteed" in known else None
    limit = _bandwidth_at(known["limit"], checker, what) if "limit" in known else None
    if len(checker.issues) > issues_before:
        return None
    pair = RatePair(
        guaranteed, limit,
        checker.location(known["guaranteed"].value) if "guaranteed" in known else None,
        checker.location(known["limit"].value) if "limit" in known else None,
    )
    _check_pair_order(pair, checker, what)
    return pair


def _merge(base: RatePair | None, override: RatePair | None) -> RatePair | None:
    if base is None or override is None:
        return override or base
    return RatePair(
        override.guaranteed or base.guaranteed, override.limit or base.limit,
        override.guaranteed_location or base.guaranteed_location, override.limit_location or base.limit_location,
    )


def read_rates(node: Node, checker: Checker, what: str) -> Rates | None:
    """Rates for both directions: top-level keys for both, `upload`/`download` per direction."""
    entries = mapping_entries(node, checker, what)
    if entries is None:
        return None
    known = check_keys(entries, checker, what, RATES_KEYS)
    if not entries:
        checker.report(node, f"{what} is empty (expected guaranteed, limit, upload or download)")
        return None
    issues_before = len(checker.issues)
    both = _pair_of({k: v for k, v in known.items() if k in PAIR_KEYS}, checker, what) \
        if any(k in known for k in PAIR_KEYS) else None
    per_direction: dict[str, RatePair | None] = {}
    for direction in DIRECTIONS:
        if direction in known:
            per_direction[direction] = read_rate_pair(known[direction].value, checker, f"'{direction}' of {what}")
    if len(checker.issues) > issues_before:
        return None
    upload = _merge(both, per_direction.get("upload"))
    download = _merge(both, per_direction.get("download"))
    for direction, pair in (("upload", upload), ("download", download)):
        if direction in per_direction and pair is not None:
            _check_pair_order(pair, checker, f"{what} ({direction})")
    return Rates(upload, download, checker.location(node))


def read_class_directions(known: dict[str, Entry], checker: Checker, what: str) -> dict[str, RatePair | None]:
    """A class's `upload:`/`download:` overrides of its guaranteed/limit."""
    overrides: dict[str, RatePair | None] = {}
    for direction in CLASS_DIRECTION_KEYS:
        if direction in known:
            overrides[direction] = read_rate_pair(known[direction].value, checker, f"'{direction}' of {what}")
    return overrides


def _check_pair_order(pair: RatePair, checker: Checker, what: str) -> None:
    """A guarantee above its own ceiling, when both are of the same kind (link-relative checks come later)."""
    g, limit = pair.guaranteed, pair.limit
    if g is None or limit is None or (g.share is None) != (limit.share is None):
        return
    def amount(bandwidth: Bandwidth) -> float:
        return bandwidth.share if bandwidth.share is not None else float(bandwidth.bits_per_second or 0)

    if amount(g) > amount(limit) + SHARE_TOLERANCE and pair.guaranteed_location is not None:
        loc = pair.guaranteed_location
        message = f"guaranteed {describe(g)} of {what} is more than its limit {describe(limit)}"
        if not any(i.location == loc and i.message == message for i in checker.issues):
            checker.report_at(loc.line, loc.column, message)


def read_group_qos(known: dict[str, Entry], checker: Checker, what: str, group: Group) -> GroupQos:
    """The QoS keys of a group; `group` carries its already parsed members."""
    bandwidth = per_host = None
    if "bandwidth" in known:
        bandwidth = read_rates(known["bandwidth"].value, checker, f"'bandwidth' of {what}")
    if "per_host" in known:
        per_host = read_rates(known["per_host"].value, checker, f"'per_host' of {what}")
    exceptions: list[HostException] = []
    if "exceptions" in known:
        exceptions = _read_exceptions(known["exceptions"].value, checker, what, group)
    max_connections = None
    if "max_connections" in known:
        max_connections = integer_of(known["max_connections"].value, checker, f"'max_connections' of {what}",
                                     1, MAX_CONNECTIONS)
    anchors = [known[k].key for k in GROUP_QOS_KEYS if k in known]
    location = checker.location(anchors[0]) if anchors else None
    qos = GroupQos(bandwidth, per_host, tuple(exceptions), max_connections, location)
    if per_host is not None or exceptions:
        anchor = known["per_host"].key if "per_host" in known else known["exceptions"].key
        _check_enumerable(group, anchor, checker, what)
    return qos


def _read_exceptions(node: Node, checker: Checker, what: str, group: Group) -> list[HostException]:
    entries = mapping_entries(node, checker, f"'exceptions' of {what}")
    found: list[HostException] = []
    for entry in entries or []:
        network = field_at(checker, entry.key, lambda text: parse_network(text, "address"), entry.name)
        if network is None:
            continue
        if network.num_addresses != 1:
            checker.report(entry.key, f"exception '{entry.name}' of {what} must be a single address, not a network")
            continue
        address = network.network_address
        if not any(address == host for host in _explicit_hosts(group, address)):
            checker.report(entry.key, f"exception '{entry.name}' of {what} is not a member of the group")
            continue
        rates = read_rates(entry.value, checker, f"exception '{entry.name}' of {what}")
        if rates is not None:
            found.append(HostException(address, rates, checker.location(entry.key)))
    return found


def _explicit_hosts(group: Group, address: IPAddress) -> Iterator[IPAddress]:
    """`address` itself when the group's networks or ranges hold it."""
    for network in group.networks:
        if network.version == address.version and address in network:
            yield address
    for member in group.ranges:
        if member.first.version == address.version and int(member.first) <= int(address) <= int(member.last):
            yield address


def _check_enumerable(group: Group, anchor: Node, checker: Checker, what: str) -> None:
    if group.macs:
        checker.report(anchor, f"per-host limits of {what} need addresses, but the group has MAC members "
                               f"({group.macs[0]}); put the hosts with MACs in a group of their own")
    count = sum(1 for _ in host_addresses(group, MAX_HOSTS_PER_GROUP + 1))
    if count > MAX_HOSTS_PER_GROUP:
        checker.report(anchor, f"per-host limits of {what} give each address a queue, and its members hold more "
                               f"than {MAX_HOSTS_PER_GROUP} addresses (split the group or use group limits)")


def host_addresses(group: Group, at_most: int | None = None) -> Iterator[IPAddress]:
    """Every address of the group's networks and ranges (IPv4 networks without network/broadcast)."""
    produced = 0
    for network in group.networks:
        hosts: Iterable[IPAddress] = network.hosts() if network.version == 4 and network.prefixlen < 31 else network
        for address in hosts:
            yield address
            produced += 1
            if at_most is not None and produced >= at_most:
                return
    for member in group.ranges:
        for number in range(int(member.first), int(member.last) + 1):
            yield ipaddress.ip_address(number)
            produced += 1
            if at_most is not None and produced >= at_most:
                return


# --- whole-policy checks against the link ------------------------------------------------

@dataclass(frozen=True)
class ResolvedPair:
    guaranteed_bps: int
    limit_bps: int


def resolve_pair(pair: RatePair | None, link_bps: int, ceiling_bps: int) -> ResolvedPair:
    """Rates in bit/s: no guarantee = 0, no limit = `ceiling_bps`; shares are of the link."""
    if pair is None:
        return ResolvedPair(0, ceiling_bps)
    guaranteed = pair.guaranteed.resolve(link_bps) if pair.guaranteed else 0
    limit = pair.limit.resolve(link_bps) if pair.limit else ceiling_bps
    return ResolvedPair(guaranteed, limit)


def group_pair(group: Group, direction: Direction, link_bps: int) -> ResolvedPair:
    rates = group.qos.bandwidth
    return resolve_pair(rates.direction(direction) if rates else None, link_bps, link_bps)


def host_pair(group: Group, direction: Direction, link_bps: int, address: IPAddress | None = None) -> ResolvedPair:
    """A host's rates: the group's per_host, then its exception; ceilings default to the group's."""
    ceiling = group_pair(group, direction, link_bps).limit_bps
    pair = group.qos.per_host.direction(direction) if group.qos.per_host else None
    if address is not None:
        for exception in group.qos.exceptions:
            if exception.address == address:
                pair = _merge(pair, exception.rates.direction(direction))
    return resolve_pair(pair, link_bps, ceiling)


def limited_directions(group: Group) -> tuple[Direction, ...]:
    """Directions in which the group's hosts get classes of their own."""
    sources = [group.qos.per_host, *(e.rates for e in group.qos.exceptions)]
    return tuple(d for d in DIRECTIONS if any(r is not None and r.direction(d) is not None for r in sources))


def check_qos_budgets(groups: dict[str, Group], classes: dict[str, QosClass], checker: Checker,
                      links: tuple[tuple[Direction, int], ...]) -> None:
    """What HTB could not honour: guarantees over the link, limits over the ceiling above them."""
    _check_host_count(groups, checker)
    for direction, link_bps in links:
        _check_class_directions(classes, direction, link_bps, checker)
        total = 0
        for group in groups.values():
            if not group.qos.shaped:
                continue
            total += _check_group(group, direction, link_bps, checker, total)


def _check_host_count(groups: dict[str, Group], checker: Checker) -> None:
    """Every limited address takes a tc minor; the 16-bit minor space holds MAX_LIMITED_HOSTS."""
    total = 0
    for group in groups.values():
        if not limited_directions(group):
            continue
        total += sum(1 for _ in host_addresses(group, MAX_HOSTS_PER_GROUP))
        if total > MAX_LIMITED_HOSTS:
            _report(group.qos.location, checker, f"per-host limits reach {total} addresses with group "
                                                 f"'{group.name}', more than {MAX_LIMITED_HOSTS} (one queue each)")
            return


def _report(location: Location | None, checker: Checker, message: str) -> None:
    if location is not None:
        checker.report_at(location.line, location.column, message)


def _check_class_directions(classes: dict[str, QosClass], direction: Direction, link_bps: int,
                            checker: Checker) -> None:
    """Classes with a per-direction override: guarantee within limit, guarantees within the link."""
    if not any(c.upload or c.download for c in classes.values()):
        return  # the classic checks in classes.py already covered both directions
    total = 0
    for qos_class in classes.values():
        guaranteed, limit = qos_class.rates(direction)
        override = qos_class.upload if direction == "upload" else qos_class.download
        g_bps, l_bps = guaranteed.resolve(link_bps), limit.resolve(link_bps)
        if override and g_bps > l_bps:
            location = override.guaranteed_location or override.limit_location
            _report(location, checker, f"guaranteed {describe(guaranteed)} of class '{qos_class.name}' is more "
                                       f"than its limit {describe(limit)} on the {direction} link")
        total += g_bps
        if override and total > link_bps:
            _report(override.guaranteed_location or override.limit_location, checker,
                    f"guaranteed rates of all classes add up to {format_rate(total)} on the {direction} link, "
                    f"more than its {format_rate(link_bps)}")


def _check_group(group: Group, direction: Direction, link_bps: int, checker: Checker, earlier_bps: int) -> int:
    """Checks one group in one direction; returns the guarantee it takes from the link."""
    what = f"group '{group.name}'"
    rates = group.qos.bandwidth.direction(direction) if group.qos.bandwidth else None
    mine = group_pair(group, direction, link_bps)
    if rates is not None:
        where = rates.guaranteed_location or rates.limit_location
        if mine.limit_bps > link_bps:
            _report(rates.limit_location, checker, f"limit {format_rate(mine.limit_bps)} of {what} is more than "
                                                   f"the {direction} link ({format_rate(link_bps)})")
        if mine.guaranteed_bps > mine.limit_bps:
            _report(where, checker, f"guaranteed {format_rate(mine.guaranteed_bps)} of {what} is more than its "
                                    f"limit {format_rate(mine.limit_bps)} on the {direction} link")
    hosts_guaranteed, hosts_reported = 0, False
    if direction in limited_directions(group):
        issues_before = len(checker.issues)
        hosts_guaranteed = _check_hosts(group, direction, link_bps, mine, checker)
        hosts_reported = len(checker.issues) > issues_before
    taken = max(mine.guaranteed_bps, hosts_guaranteed)
    if taken and earlier_bps + taken > link_bps and not hosts_reported:  # one message per cause
        location = (rates.guaranteed_location if rates and rates.guaranteed_location else group.qos.location)
        _report(location, checker,
                f"guarantees of the groups add up to {format_rate(earlier_bps + taken)} on the {direction} link "
                f"(with {what}), more than its {format_rate(link_bps)}")
    return taken


def _check_hosts(group: Group, direction: Direction, link_bps: int, mine: ResolvedPair, checker: Checker) -> int:
    what = f"group '{group.name}'"
    per_host = group.qos.per_host.direction(direction) if group.qos.per_host else None
    default = host_pair(group, direction, link_bps)
    if per_host is not None and default.limit_bps > mine.limit_bps:
        _report(per_host.limit_location, checker,
                f"per-host limit {format_rate(default.limit_bps)} of {what} is above the group's ceiling "
                f"{format_rate(mine.limit_bps)} on the {direction} link")
    if per_host is not None and default.guaranteed_bps > default.limit_bps:
        _report(per_host.guaranteed_location, checker,
                f"per-host guarantee {format_rate(default.guaranteed_bps)} of {what} is more than the per-host "
                f"limit {format_rate(default.limit_bps)} on the {direction} link")
    excepted = {e.address: e for e in group.qos.exceptions}
    total = 0
    count = 0
    for address in host_addresses(group, MAX_HOSTS_PER_GROUP):
        rates = host_pair(group, direction, link_bps, address) if address in excepted else default
        total += rates.guaranteed_bps
        count += 1
        exception = excepted.get(address)
        pair = exception.rates.direction(direction) if exception else None
        if exception is not None and pair is not None and rates.limit_bps > mine.limit_bps:
            _report(pair.limit_location or exception.location, checker,
                    f"limit {format_rate(rates.limit_bps)} of host {address} is above the ceiling of {what} "
                    f"({format_rate(mine.limit_bps)}) on the {direction} link")
    if total > mine.limit_bps:
        _report(per_host.guaranteed_location if per_host else group.qos.location, checker,
                f"per-host guarantees of {what} add up to {format_rate(total)} ({count} hosts) on the {direction} "
                f"link, more than the group's ceiling {format_rate(mine.limit_bps)}")
    return total


def rate_pair_schema(description: str) -> Schema:
    bandwidth = 'A share of the link ("20%") or a rate ("5mbit").'
    return object_schema(description, {
        "guaranteed": string_schema(f"Always available. {bandwidth}", pattern=BANDWIDTH_PATTERN),
        "limit": string_schema(f"The most it may use. {bandwidth}", pattern=BANDWIDTH_PATTERN),
    })


def rates_schema(description: str) -> Schema:
    schema = rate_pair_schema(description + " Top-level keys apply to both directions.")
    schema["properties"] |= {
        "upload": rate_pair_schema("Upload (WAN egress) only."),
        "download": rate_pair_schema("Download (LAN egress) only."),
    }
    return schema
