"""Parsers for the policy's single values: rates, addresses, ports, days, hours.

Each takes the text an admin wrote and returns the model's value or raises
FieldError with a message that says what was expected; the loader adds the
FILE:LINE:COL. Nothing here knows about YAML.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from gatewayd.policy.limits import MAX_RATE_BITS_PER_SECOND
from gatewayd.policy.model import (
    PROTOCOLS,
    SIGNATURE_NAMES,
    AddressRange,
    Bandwidth,
    HourRange,
    IPNetwork,
    NetworkOnPorts,
    PortMatch,
)


class FieldError(ValueError):
    """A value that does not parse; str() is the message for the admin."""


LiteralText = TypeVar("LiteralText", bound=str)


def literal_of(text: str, choices: tuple[LiteralText, ...]) -> LiteralText | None:
    """`text` as one of `choices` (the values of a Literal type, e.g. model.ACTIONS), or None.

    Returning the matching choice rather than `text` gives the caller the Literal type
    without a cast."""
    for choice in choices:
        if text == choice:
            return choice
    return None


NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SIGNATURE_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
INTERFACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$"
RATE_PATTERN = r"^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit)$"
SHARE_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"
HOURS_PATTERN = r"^[0-9]{1,2}:[0-9]{2}-[0-9]{1,2}:[0-9]{2}$"
PORT_PATTERN = r"^(tcp|udp)/[0-9]{1,5}(-[0-9]{1,5})?$"
MAC_PATTERN = r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$"

# tc counts in SI units: 1kbit is 1000 bit/s.
RATE_UNITS: dict[str, int] = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SETS: dict[str, frozenset[int]] = {
    "weekdays": frozenset(range(5)),
    "weekend": frozenset({5, 6}),
    "daily": frozenset(range(7)),
}
MINUTES_PER_DAY = 24 * 60
SUGGESTION_CUTOFF = 0.6

RATE_EXAMPLES = "e.g. 10mbit, 500kbit, 1gbit"
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def suggestion(word: str, candidates: Iterable[str]) -> str:
    """'; did you mean 'x'?' for a close candidate, else ''."""
    best, best_ratio = "", SUGGESTION_CUTOFF
    for name in candidates:
        ratio = difflib.SequenceMatcher(None, word, str(name)).ratio()
        if ratio >= best_ratio and (not best or ratio > best_ratio):  # ties: the earlier, usually likelier, name
            best, best_ratio = str(name), ratio
    return f"; did you mean '{best}'?" if best else ""


def shortened(text: str, at_most: int = 40) -> str:
    """`text` as an error quotes it: a 5,000-digit value is named by its start and its length."""
    return text if len(text) <= at_most else f"{text[:at_most]}... ({len(text):,} characters)"


def check_name(text: str, what: str) -> str:
    if not re.fullmatch(NAME_PATTERN, text):
        raise FieldError(
            f"{what} '{text}' is not valid (expected lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return text


def check_signature(text: str) -> str:
    if not re.fullmatch(SIGNATURE_PATTERN, text):
        raise FieldError(f"signature '{text}' is not valid (expected a lowercase identifier, e.g. bittorrent)")
    if text not in SIGNATURE_NAMES:
        raise FieldError(f"signature '{text}' is not known to the classifier (known: "
                         f"{', '.join(sorted(SIGNATURE_NAMES))})" + suggestion(text, sorted(SIGNATURE_NAMES)))
    return text


URL_RULE_PATTERN = r"^(\*|(\*\.|=)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)/[!-~]*$"


def parse_url_rule(text: str) -> str:
    """'HOST/PATH-PREFIX': HOST a domain pattern or '*' (any host); the path prefix may be empty."""
    rule = text.strip()
    host, _, _path = rule.partition("/")
    if not re.fullmatch(URL_RULE_PATTERN, rule.lower() if host else "") or len(rule) > 512:
        raise FieldError(f"URL rule '{text}' is not valid (expected HOST/PATH-PREFIX, e.g. "
                         "pan.baidu.com/rest/ or */download/; HOST may be *, *.example.com or =example.com)")
    return rule


def check_url_keyword(text: str) -> str:
    if not text or len(text) > 128 or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise FieldError(f"URL keyword '{text}' is not valid (expected 1-128 printable characters, no spaces)")
    return text


def check_interface_name(text: str) -> str:
    if not re.fullmatch(INTERFACE_PATTERN, text):
        raise FieldError(
            f"interface name '{text}' is not valid (expected a Linux interface name of at most "
            "15 letters, digits, '_', '.', '@' or '-', e.g. lan0, eth1.100)"
        )
    return text


def parse_rate(text: str) -> int:
    """An absolute rate in bit/s, such as a link's speed."""
    match = re.fullmatch(_NUMBER + r"(bit|kbit|mbit|gbit)", text)
    if not match:
        raise FieldError(f"rate '{text}' is not valid (expected an absolute rate, {RATE_EXAMPLES})")
    amount = Decimal(match.group(1)) * RATE_UNITS[match.group(2)]
    if amount > MAX_RATE_BITS_PER_SECOND:  # before int(): a 5,000-digit rate overflowed tc's arithmetic
        raise FieldError(f"rate '{shortened(text)}' is more than {format_rate(MAX_RATE_BITS_PER_SECOND)}, the limit")
    bits = int(amount)
    if bits <= 0:
        raise FieldError(f"rate '{text}' must be more than 0")
    return bits


def parse_bandwidth(text: str) -> Bandwidth:
    """A share of the link ("20%") or an absolute rate ("10mbit")."""
    share = re.fullmatch(_NUMBER + "%", text)
    if share:
        percent = Decimal(share.group(1))
        if not 0 < percent <= 100:
            raise FieldError(f"percentage '{text}' is out of range (expected more than 0% and at most 100%)")
        return Bandwidth(share=float(percent / 100))
    if re.fullmatch(_NUMBER + r"(bit|kbit|mbit|gbit)", text):
        return Bandwidth(bits_per_second=parse_rate(text))
    raise FieldError(f"rate '{text}' is not valid (expected {RATE_EXAMPLES}, 20%)")


def format_rate(bits_per_second: int) -> str:
    for unit in ("gbit", "mbit", "kbit"):
        size = RATE_UNITS[unit]
        if bits_per_second >= size and bits_per_second % size == 0:
            return f"{bits_per_second // size}{unit}"
    if bits_per_second >= 1000:
        return f"{Decimal(bits_per_second) / 1000:f}kbit"
    return f"{bits_per_second}bit"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # ipaddress accepts "fe80::1%eth0"; a zone means nothing to a gateway's filters.
    if "%" in text:
        raise ValueError(text)
    return ipaddress.ip_address(text)


def parse_network(text: str, allowed: str = "network or address") -> IPNetwork:
    """A CIDR network or a single address; host bits set is an error, not a silent fix."""
    invalid = FieldError(f"'{text}' is not an IPv4/IPv6 {allowed}")
    if "%" in text:
        raise invalid
    if "/" not in text:
        try:
            return ipaddress.ip_network(_address(text))
        except ValueError:
            raise invalid from None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise invalid from None
    raise FieldError(f"'{text}' has host bits set (did you mean {loose}?)")


def parse_app_address(text: str) -> IPNetwork | NetworkOnPorts:
    """An app's server network, alone or followed by the ports it names the app on ("8.8.8.8 tcp/443")."""
    words = text.split()
    if len(words) < 2:
        return parse_network(text)
    return NetworkOnPorts(parse_network(words[0]), tuple(parse_port_match(port) for port in words[1:]))


def parse_address_range(text: str) -> AddressRange:
    first_text, _, last_text = text.partition("-")
    try:
        first, last = _address(first_text.strip()), _address(last_text.strip())
    except ValueError:
        raise FieldError(
            f"'{text}' is not an IPv4/IPv6 network, address, range (a-b) or MAC"
        ) from None
    if first.version != last.version:
        raise FieldError(f"range '{text}' mixes IPv4 and IPv6")
    if int(first) > int(last):  # same family, checked above
        raise FieldError(f"range '{text}' is backwards (the first address is above the last)")
    return AddressRange(first, last)


def parse_member(text: str) -> IPNetwork | AddressRange | str:
    """A group member: network, address, range "a-b", or MAC (returned lowercase with colons)."""
    if re.fullmatch(MAC_PATTERN, text):
        return text.lower().replace("-", ":")
    if "-" in text:
        return parse_address_range(text)
    return parse_network(text, "network, address, range (a-b) or MAC")


def parse_port_match(text: str) -> PortMatch:
    invalid = FieldError(
        f"port '{text}' is not valid (expected PROTO/PORT or PROTO/FIRST-LAST with PROTO tcp or udp "
        "and ports 1-65535, e.g. tcp/443, udp/5000-5010)"
    )
    match = re.fullmatch(r"([a-z]+)/([0-9]{1,5})(?:-([0-9]{1,5}))?", text)
    protocol = literal_of(match.group(1), PROTOCOLS) if match else None
    if not match or protocol is None:
        raise invalid
    first = int(match.group(2))
    last = int(match.group(3)) if match.group(3) else first
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        raise invalid
    if first > last:
        raise FieldError(f"port range '{text}' is backwards (the first port is above the last)")
    return PortMatch(protocol, first, last)


def parse_days(text: str) -> frozenset[int]:
    """One day spec: a day, a range of days (wrapping past Sunday), or weekdays/weekend/daily."""
    if text in DAY_SETS:
        return DAY_SETS[text]
    first_name, dash, last_name = text.partition("-")
    names = (first_name, last_name) if dash else (first_name,)
    if all(name in DAY_NAMES for name in names):
        first, last = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
        span = (last - first) % 7
        return frozenset((first + offset) % 7 for offset in range(span + 1))
    words = [*DAY_NAMES, *DAY_SETS]
    wrong = next((name for name in names if name not in DAY_NAMES), text)
    raise FieldError(
        f"day '{text}' is not valid (expected mon, tue, wed, thu, fri, sat, sun, a range like "
        "mon-fri, weekdays, weekend or daily)" + suggestion(wrong if dash else text, words)
    )


def parse_hour_range(text: str) -> HourRange:
    invalid = FieldError(
        f"hours '{text}' are not valid (expected HH:MM-HH:MM, e.g. 09:00-18:00; 24:00 may end a range)"
    )
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})", text)
    if not match:
        raise invalid
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    if start_hour > 23 or start_minute > 59 or end_minute > 59 or end_hour > 24:
        raise invalid
    start = start_hour * 60 + start_minute
    end = end_hour * 60 + end_minute
    if end > MINUTES_PER_DAY:
        raise invalid
    if start == end:
        raise FieldError(f"hours '{text}' start and end at the same time (leave out 'hours' for all day)")
    return HourRange(start, end)


DOMAIN_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
# One compiled pattern for the whole name: blocklists of 100,000 domains are read on every reload.
DOMAIN_NAME = re.compile(rf"{DOMAIN_LABEL}(\.{DOMAIN_LABEL})*")


def parse_domain(text: str) -> str:
    """A domain pattern, lowercased: "example.com", "*.example.com" or "=example.com"."""
    # A new string even when the name is already lowercase, on purpose: the policy keeps it, and
    # kept strings made while the YAML nodes are alive would pin the nodes' freed memory (pymalloc
    # frees an arena only when all of it is free), so the daemon's RSS would stay at its reload peak.
    lowered = text.lower()
    prefix = "*." if lowered.startswith("*.") else "=" if lowered.startswith("=") else ""
    name = lowered[len(prefix):]
    if len(name) > 253 or not DOMAIN_NAME.fullmatch(name):
        raise FieldError(f"domain '{text}' is not valid (expected e.g. example.com, *.example.com or =example.com)")
    return lowered


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def parse_listen(text: str) -> str:
    """HOST:PORT for the metrics endpoint; IPv6 hosts in brackets."""
    invalid = FieldError(
        f"listen address '{text}' is not valid (expected HOST:PORT, e.g. 127.0.0.1:9108 or [::1]:9108)"
    )
    bracketed = re.fullmatch(r"\[([^\]]+)\]:([0-9]{1,5})", text)
    plain = re.fullmatch(r"([^:\[\]]+):([0-9]{1,5})", text)
    if bracketed:
        try:
            if _address(bracketed.group(1)).version != 6:
                raise invalid
        except ValueError:
            raise invalid from None
        port = int(bracketed.group(2))
    elif plain:
        host = plain.group(1)
        if not re.fullmatch(rf"{DOMAIN_LABEL}(\.{DOMAIN_LABEL})*", host.lower()):
            raise invalid
        if re.fullmatch(r"[0-9.]+", host) and not _is_ipv4(host):  # 999.1.1.1 is no host name
            raise invalid
        port = int(plain.group(2))
    else:
        raise invalid
    if not 1 <= port <= 65535:
        raise invalid
    return text


def percent_text(share: float) -> str:
    try:
        return f"{Decimal(str(round(share * 100, 6))).normalize():f}%"
    except InvalidOperation:
        return f"{share * 100}%"


DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s)$"


def parse_duration_ms(text: str) -> int:
    """A duration such as 500ms or 2s, in whole milliseconds."""
    match = re.fullmatch(_NUMBER + r"(ms|s)", text)
    if not match:
        raise FieldError(f"duration '{text}' is not valid (expected e.g. 500ms or 2s)")
    milliseconds = int(Decimal(match.group(1)) * (1 if match.group(2) == "ms" else 1000))
    if milliseconds <= 0:
        raise FieldError(f"duration '{text}' must be more than 0")
    return milliseconds


def parse_share(text: str) -> float:
    """A percentage such as 20% as a share 0..1 (0% allowed: "no loss at all")."""
    match = re.fullmatch(_NUMBER + "%", text)
    if not match or Decimal(match.group(1)) > 100:
        raise FieldError(f"'{text}' is not a percentage from 0% to 100% (e.g. 20%)")
    return float(Decimal(match.group(1)) / 100)
