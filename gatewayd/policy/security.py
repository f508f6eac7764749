"""The `security` section: IP-MAC bindings, anti-spoofing, flood limits, port-scan defence.

Every problem is reported at its FILE:LINE:COL; problems in a bindings file the
admin keeps are reported at that file's own line and column.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from yaml.nodes import Node

from gatewayd.policy.errors import PolicyIssue
from gatewayd.policy.fields import FieldError, literal_of, parse_network, shortened
from gatewayd.policy.limits import MAX_BINDINGS, MAX_NUMBER_DIGITS, limit_message
from gatewayd.policy.model import (
    RATE_UNITS,
    UNBOUND_ACTIONS,
    Binding,
    BindingTable,
    FileReference,
    FloodLimits,
    IPAddress,
    Location,
    Policy,
    RateLimit,
    RateUnit,
    ScanDefence,
    SecurityPolicy,
    UnboundAction,
)
from gatewayd.policy.schema_parts import Schema, object_schema
from gatewayd.policy.sourcefile import read_source
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    integer_of,
    is_null,
    mapping_entries,
    parsed_list,
    text_list_of,
    text_of,
)

SECURITY_KEYS = ("bindings", "anti_spoofing", "flood", "port_scan", "syn_proxy")
BINDING_KEYS = ("hosts", "file", "learn", "unbound")
FLOOD_KEYS = ("syn", "udp", "icmp_echo", "new_connections")
LIMIT_KEYS = ("rate", "burst")
SCAN_KEYS = ("ports", "hosts", "window", "block_for", "allow")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on"), ("false", "no", "off")

MAX_RATE = 10_000_000  # packets per unit; more is no limit at all
MAX_BURST = 1_000_000
MAX_SCAN_COUNT = 65535
MAX_WINDOW_SECONDS = 3600
MAX_BLOCK_SECONDS = 7 * 86400
DEFAULT_WINDOW_SECONDS = 10
DEFAULT_BLOCK_SECONDS = 600
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAC_TEXT = r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}"


# --- single values ---------------------------------------------------------------------

def parse_mac(text: str) -> str:
    if not re.fullmatch(MAC_TEXT, text):
        raise FieldError(f"'{text}' is not a MAC address (expected e.g. 02:00:00:00:00:10)")
    mac = text.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise FieldError(f"MAC '{text}' is a multicast address; a host's frames never come from one")
    if mac == "00:00:00:00:00:00":
        raise FieldError(f"MAC '{text}' is all zeros; no host has it")
    return mac


def parse_host_address(text: str) -> IPAddress:
    try:
        if "%" in text or "/" in text:
            raise ValueError(text)
        return ipaddress.ip_address(text)
    except ValueError:
        raise FieldError(f"'{text}' is not a single IPv4/IPv6 address (a binding names one host)") from None


def parse_rate_limit_rate(text: str) -> tuple[int, RateUnit]:
    match = re.fullmatch(r"([0-9]+)/([a-z]+)", text)
    unit = literal_of(match.group(2), RATE_UNITS) if match else None
    if not match or unit is None:
        raise FieldError(f"rate '{text}' is not valid (expected PACKETS/second or PACKETS/minute, e.g. 200/second)")
    digits = match.group(1)
    count = int(digits) if len(digits) <= MAX_NUMBER_DIGITS else MAX_RATE + 1  # no int() of 5,000 digits
    if not 1 <= count <= MAX_RATE:
        raise FieldError(f"rate '{shortened(text)}' is out of range (expected 1 to {MAX_RATE} packets per "
                         f"{match.group(2)})")
    return count, unit


def parse_duration(text: str) -> int:
    match = re.fullmatch(rf"([0-9]{{1,{MAX_NUMBER_DIGITS}}})(s|m|h|d)", text)
    if not match or int(match.group(1)) == 0:
        raise FieldError(f"duration '{text}' is not valid (expected a whole number with s, m, h or d, e.g. 10s, 10m)")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def boolean_of(node: Node, checker: Checker, what: str) -> bool | None:
    text = text_of(node, checker, what)
    if text is None:
        return None
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    checker.report(node, f"{what} must be true or false (got '{text}')")
    return None


def _duration_in(node: Node, checker: Checker, what: str, low: int, high: int) -> int | None:
    text = text_of(node, checker, what)
    seconds = field_at(checker, node, parse_duration, text) if text is not None else None
    if seconds is not None and not low <= seconds <= high:
        checker.report(node, f"{what} is {text}, out of range (expected {low}s to {high}s)")
        return None
    return seconds


# --- the section -----------------------------------------------------------------------

def read_security(entry: Entry, checker: Checker) -> SecurityPolicy | None:
    if is_null(entry.value):
        return None
    known = checked_mapping(entry.value, checker, "'security'", SECURITY_KEYS, owner=entry.key)
    if known is None:
        return None
    bindings = _read_bindings(known["bindings"], checker) if "bindings" in known else None
    anti_spoofing = False
    if "anti_spoofing" in known:
        anti_spoofing = bool(boolean_of(known["anti_spoofing"].value, checker, "'anti_spoofing' of 'security'"))
    flood = _read_flood(known["flood"], checker) if "flood" in known else FloodLimits()
    scan = _read_scan(known["port_scan"], checker) if "port_scan" in known else None
    syn_proxy = _read_syn_proxy(known["syn_proxy"], checker) if "syn_proxy" in known else ()
    return SecurityPolicy(bindings, anti_spoofing, flood, scan, checker.location(entry.key), syn_proxy)


def parse_tcp_port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536):
        raise FieldError(f"'{shortened(text)}' is not a TCP port (expected 1 to 65535)")
    return int(text)


def _read_syn_proxy(entry: Entry, checker: Checker) -> tuple[int, ...]:
    """TCP ports of services reachable from the WAN; the gateway answers their SYNs itself."""
    ports: list[int] = []
    for node, text in text_list_of(entry.value, checker, "'syn_proxy' of 'security'"):
        port = field_at(checker, node, parse_tcp_port, text)
        if port is not None and port not in ports:
            ports.append(port)
    return tuple(ports)


def _read_bindings(entry: Entry, checker: Checker) -> BindingTable | None:
    what = "'bindings' of 'security'"
    known = checked_mapping(entry.value, checker, what, BINDING_KEYS, owner=entry.key)
    if known is None:
        return None
    by_address: dict[IPAddress, Binding] = {}
    if "hosts" in known and not is_null(known["hosts"].value):
        for pair in mapping_entries(known["hosts"].value, checker, f"'hosts' of {what}") or []:
            address = field_at(checker, pair.key, parse_host_address, pair.name)
            mac_text = text_of(pair.value, checker, f"the MAC bound to {pair.name}")
            mac = field_at(checker, pair.value, parse_mac, mac_text) if mac_text is not None else None
            if address is not None and mac is not None:
                _add_binding(by_address, Binding(address, mac, checker.location(pair.key)), checker)
    file: FileReference | None = None
    if "file" in known:
        node = known["file"].value
        file_text = text_of(node, checker, f"'file' of {what}")
        if file_text is not None:
            path = _beside(checker.source, file_text)
            bindings, text = read_bindings_file(path, checker, node)
            for binding in bindings:
                _add_binding(by_address, binding, checker)
            if text is not None:
                file = FileReference(str(path), text, (node.start_mark.line, node.start_mark.column),
                                     (node.end_mark.line, node.end_mark.column))
    learn = False
    if "learn" in known:
        learn = bool(boolean_of(known["learn"].value, checker, f"'learn' of {what}"))
    unbound: UnboundAction = "allow"
    if "unbound" in known:
        node = known["unbound"].value
        text = text_of(node, checker, f"'unbound' of {what}")
        action = literal_of(text, UNBOUND_ACTIONS) if text is not None else None
        if text is not None and action is None:
            checker.report(node, f"unbound '{text}' is not valid (expected allow or drop)")
        elif action is not None:
            unbound = action
    if len(by_address) > MAX_BINDINGS:
        checker.report(entry.key, limit_message(what, len(by_address), "bindings", MAX_BINDINGS))
    if not by_address and not learn and unbound == "allow" and "file" not in known:
        checker.report(entry.key, f"{what} binds nothing (give hosts, a file, learn: true or unbound: drop)")
    return BindingTable(tuple(by_address.values()), learn, unbound, file)


def _add_binding(by_address: dict[IPAddress, Binding], binding: Binding, checker: Checker) -> None:
    first = by_address.get(binding.address)
    if first is None:
        by_address[binding.address] = binding
        return
    where = binding.location or Location(checker.source, 1, 1)
    checker.issues.append(PolicyIssue(where, f"address {binding.address} is bound twice (first at {first.location})"))


def _beside(policy_source: str, file_text: str) -> Path:
    """A relative bindings file is read next to the policy file, wherever the daemon runs."""
    path = Path(file_text)
    return path if path.is_absolute() else Path(policy_source).resolve().parent / path


def read_bindings_file(path: Path, checker: Checker, reference: Node) -> tuple[list[Binding], str | None]:
    """`MAC ADDRESS` (as in /etc/ethers) or `ADDRESS MAC` per line; '#' starts a comment.

    The bindings and the file's text (None if it cannot be read). Problems are reported in the
    bindings file's own FILE:LINE:COL, never quoting it: the path may name a file that is not a
    bindings file at all, such as /etc/shadow.
    """
    file_checker = Checker(str(path))
    text = read_source(path, file_checker, "bindings file")
    bindings: list[Binding] = []
    if text is not None:
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0]
            words = [(m.group(0), m.start() + 1) for m in re.finditer(r"\S+", line)]
            if not words:
                continue
            if len(bindings) == MAX_BINDINGS:
                file_checker.report_at(number, words[0][1], f"the bindings file has more than {MAX_BINDINGS:,} "
                                                            f"bindings; the limit is {MAX_BINDINGS:,}")
                break
            if len(words) != 2:
                file_checker.report_at(number, words[0][1], "expected 'MAC ADDRESS' (two words) on each line")
                continue
            mac_word, address_word = words if re.fullmatch(MAC_TEXT, words[0][0]) else words[::-1]
            binding = _file_binding(file_checker, number, mac_word, address_word)
            if binding is not None:
                bindings.append(binding)
    if file_checker.issues and text is None:
        # The file itself is missing or unreadable: the admin fixes the policy's reference.
        for issue in file_checker.issues:
            checker.report(reference, f"{issue.message} ({path})")
    else:
        checker.issues.extend(file_checker.issues)
    return bindings, text


def referenced_files(policy: Policy) -> tuple[FileReference, ...]:
    """Every file the policy depends on besides itself (today: the bindings file)."""
    bindings = policy.security.bindings if policy.security else None
    return (bindings.file,) if bindings is not None and bindings.file is not None else ()


def _file_binding(checker: Checker, line: int, mac_word: tuple[str, int],
                  address_word: tuple[str, int]) -> Binding | None:
    try:
        mac = parse_mac(mac_word[0])
    except FieldError:
        checker.report_at(line, mac_word[1], "expected a host's MAC address here (e.g. 02:00:00:00:00:10; "
                                             "not multicast, not all zeros)")
        return None
    try:
        address = parse_host_address(address_word[0])
    except FieldError:
        checker.report_at(line, address_word[1], "expected a single IPv4/IPv6 address here (a binding names one host)")
        return None
    return Binding(address, mac, Location(checker.source, line, address_word[1]))


def _read_flood(entry: Entry, checker: Checker) -> FloodLimits:
    what = "'flood' of 'security'"
    known = checked_mapping(entry.value, checker, what, FLOOD_KEYS, owner=entry.key)
    if known is None:
        return FloodLimits()
    limits = {name: _read_limit(known[name], checker) for name in FLOOD_KEYS if name in known}
    return FloodLimits(**limits)


def _read_limit(entry: Entry, checker: Checker) -> RateLimit | None:
    what = f"flood limit '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, LIMIT_KEYS, required=LIMIT_KEYS, owner=entry.key)
    if known is None:
        return None
    rate = None
    if "rate" in known:
        text = text_of(known["rate"].value, checker, f"'rate' of {what}")
        rate = field_at(checker, known["rate"].value, parse_rate_limit_rate, text) if text is not None else None
    burst = integer_of(known["burst"].value, checker, f"'burst' of {what}", 1, MAX_BURST) if "burst" in known else None
    if rate is None or burst is None:
        return None
    return RateLimit(rate[0], rate[1], burst)


def _read_scan(entry: Entry, checker: Checker) -> ScanDefence | None:
    what = "'port_scan' of 'security'"
    known = checked_mapping(entry.value, checker, what, SCAN_KEYS, owner=entry.key)
    if known is None:
        return None
    issues_before = len(checker.issues)
    ports = (integer_of(known["ports"].value, checker, f"'ports' of {what}", 1, MAX_SCAN_COUNT)
             if "ports" in known else None)
    hosts = (integer_of(known["hosts"].value, checker, f"'hosts' of {what}", 1, MAX_SCAN_COUNT)
             if "hosts" in known else None)
    if "ports" not in known and "hosts" not in known:
        checker.report(entry.key, f"{what} needs 'ports', 'hosts' or both (how many distinct ones make a scan)")
    window = DEFAULT_WINDOW_SECONDS
    if "window" in known:
        window = _duration_in(known["window"].value, checker, f"'window' of {what}", 1, MAX_WINDOW_SECONDS) or window
    block = DEFAULT_BLOCK_SECONDS
    if "block_for" in known:
        block = _duration_in(known["block_for"].value, checker, f"'block_for' of {what}", 1, MAX_BLOCK_SECONDS) or block
    allow = parsed_list(known, "allow", checker, what, parse_network)
    if len(checker.issues) > issues_before:
        return None
    return ScanDefence(ports, hosts, window, block, tuple(allow))


# --- the section's JSON Schema (policy/schema.py puts it in the policy's) ---

DURATION_PATTERN = "^[0-9]+(s|m|h|d)$"
LIMIT_RATE_PATTERN = "^[0-9]+/(second|minute)$"
BOOLEAN: Schema = {"type": "boolean"}


def _limit(what: str) -> Schema:
    properties = {
        "rate": {"type": "string", "pattern": LIMIT_RATE_PATTERN, "description": "PACKETS/second or PACKETS/minute."},
        "burst": {"type": "integer", "minimum": 1, "maximum": MAX_BURST,
                  "description": "Packets allowed above the rate."},
    }
    assert tuple(properties) == LIMIT_KEYS
    return object_schema(f"{what} per source address; the excess is dropped.", properties, LIMIT_KEYS)


def security_schema() -> Schema:
    bindings = {
        "hosts": {"type": "object", "description": "ADDRESS: MAC pairs.",
                  "additionalProperties": {"type": "string", "pattern": f"^{MAC_TEXT}$"}},
        "file": {"type": "string",
                 "description": "A file of 'MAC ADDRESS' lines (as /etc/ethers), relative to the policy."},
        "learn": BOOLEAN | {"description": "Also bind the pairs in the neighbour table at start and reload."},
        "unbound": {"enum": list(UNBOUND_ACTIONS), "description": "Frames from addresses bound to nothing."},
    }
    flood = {
        "syn": _limit("TCP SYNs"),
        "udp": _limit("UDP packets"),
        "icmp_echo": _limit("ICMP echo requests"),
        "new_connections": _limit("New connections (conntrack)"),
    }
    count = {"type": "integer", "minimum": 1, "maximum": MAX_SCAN_COUNT}
    duration = {"type": "string", "pattern": DURATION_PATTERN}
    scan = {
        "ports": count | {"description": "More than this many distinct ports in the window is a scan."},
        "hosts": count | {"description": "More than this many distinct hosts in the window is a sweep."},
        "window": duration | {"description": "The window, e.g. 10s (default 10s)."},
        "block_for": duration | {"description": "How long a scanner stays blocked, e.g. 10m (default 10m)."},
        "allow": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                  "description": "Addresses or networks never blocklisted."},
    }
    assert (tuple(bindings), tuple(flood), tuple(scan)) == (BINDING_KEYS, FLOOD_KEYS, SCAN_KEYS)
    properties = {
        "bindings": object_schema("IP-MAC binding and ARP-spoof defence.", bindings),
        "anti_spoofing": BOOLEAN | {"description": "Drop LAN packets whose source does not route back to the LAN."},
        "flood": object_schema("Per-source flood limits.", flood),
        "port_scan": object_schema("Port-scan and host-sweep defence with a timed blocklist.", scan),
        "syn_proxy": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                      "description": "TCP ports of services exposed to the WAN: the gateway completes their "
                                     "handshakes itself (SYN proxy), so a SYN flood never reaches the server."},
    }
    assert tuple(properties) == SECURITY_KEYS
    return object_schema("The LAN guard: all of it kernel rules.", properties)
