"""DNS message parsing: question name and A/AAAA/CNAME answers, loop-safe.

Only what classification needs: the first question and the answer section.
Compression pointers must point strictly backwards (RFC 1035 pointers always
refer to an earlier occurrence), which makes loops impossible; the total
number of labels and the name length are bounded too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from struct import Struct

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28

_HEADER = Struct("!HHHHHH")
_RECORD_FIXED = Struct("!HHIH")  # type, class, ttl, rdlength
_U16 = Struct("!H")
_MAX_NAME_LENGTH = 255
_MAX_LABELS = 128
_MAX_RECORDS = 256  # answers we look at; real responses have a handful

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str  # owner name, lowercase, no trailing dot
    rtype: int
    ttl: int
    value: IPAddress | str  # address for A/AAAA, target name for CNAME


@dataclass(frozen=True, slots=True)
class DnsMessage:
    transaction_id: int
    is_response: bool
    rcode: int
    question_name: str | None
    question_type: int | None
    answers: tuple[DnsRecord, ...]  # only A, AAAA and CNAME records


class _Malformed(Exception):
    pass


def _read_name(message: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` and the offset just after it in the record (not after a pointer target)."""
    labels: list[str] = []
    name_length = 0
    resume_at = -1  # where parsing continues once the first pointer was followed
    lowest_allowed_pointer = offset  # pointers must go strictly backwards
    position = offset
    for _ in range(_MAX_LABELS):
        if position >= len(message):
            raise _Malformed("name runs past the message")
        length = message[position]
        kind = length & 0xC0
        if kind == 0xC0:
            if position + 1 >= len(message):
                raise _Malformed("truncated pointer")
            target = ((length & 0x3F) << 8) | message[position + 1]
            if target >= lowest_allowed_pointer:
                raise _Malformed("forward or looping compression pointer")
            if resume_at < 0:
                resume_at = position + 2
            lowest_allowed_pointer = target
            position = target
            continue
        if kind:
            raise _Malformed("reserved label type")
        if length == 0:
            end = resume_at if resume_at >= 0 else position + 1
            return ".".join(labels).lower(), end
        label = message[position + 1:position + 1 + length]
        if len(label) != length:
            raise _Malformed("truncated label")
        name_length += length + 1
        if name_length > _MAX_NAME_LENGTH:
            raise _Malformed("name too long")
        labels.append(label.decode("latin-1"))
        position += 1 + length
    raise _Malformed("too many labels")


def parse_dns(message: bytes) -> DnsMessage | None:
    """Parse a DNS message (UDP payload); None if malformed. Never raises."""
    try:
        return _parse(bytes(message))
    except Exception:  # _Malformed, struct.error, IndexError, bad address bytes
        return None


def parse_dns_tcp(stream: bytes) -> DnsMessage | None:
    """Parse the first DNS message of a TCP stream (2-byte length prefix); None if malformed or incomplete."""
    if len(stream) < 2:
        return None
    length = (stream[0] << 8) | stream[1]
    if length < 12 or len(stream) < 2 + length:
        return None
    return parse_dns(stream[2:2 + length])


def tcp_message_complete(stream: bytes | bytearray) -> bool:
    """Whether a TCP DNS stream holds at least one whole length-prefixed message."""
    return len(stream) >= 2 and len(stream) >= 2 + ((stream[0] << 8) | stream[1])


def _parse(message: bytes) -> DnsMessage:
    if len(message) < 12:
        raise _Malformed("short header")
    transaction_id, flags, question_count, answer_count, _ns, _ar = _HEADER.unpack_from(message, 0)
    offset = 12
    question_name: str | None = None
    question_type: int | None = None
    for index in range(min(question_count, 16)):
        name, offset = _read_name(message, offset)
        if offset + 4 > len(message):
            raise _Malformed("truncated question")
        if index == 0:
            question_name = name
            question_type = _U16.unpack_from(message, offset)[0]
        offset += 4
    answers: list[DnsRecord] = []
    for _ in range(min(answer_count, _MAX_RECORDS)):
        name, offset = _read_name(message, offset)
        if offset + 10 > len(message):
            raise _Malformed("truncated record")
        rtype, _rclass, ttl, rdlength = _RECORD_FIXED.unpack_from(message, offset)
        offset += 10
        rdata_end = offset + rdlength
        if rdata_end > len(message):
            raise _Malformed("truncated rdata")
        if ttl & 0x80000000:  # RFC 2181: a TTL with the top bit set means 0
            ttl = 0
        if rtype == TYPE_A and rdlength == 4:
            answers.append(DnsRecord(name, rtype, ttl, ipaddress.IPv4Address(message[offset:rdata_end])))
        elif rtype == TYPE_AAAA and rdlength == 16:
            answers.append(DnsRecord(name, rtype, ttl, ipaddress.IPv6Address(message[offset:rdata_end])))
        elif rtype == TYPE_CNAME:
            target, _ = _read_name(message[:rdata_end], offset)
            answers.append(DnsRecord(name, rtype, ttl, target))
        offset = rdata_end
    return DnsMessage(transaction_id, bool(flags & 0x8000), flags & 0x000F,
                      question_name, question_type, tuple(answers))


def resolve_answers(message: DnsMessage) -> list[tuple[IPAddress, int, tuple[str, ...]]]:
    """Addresses the answer gives for the question name, each with its TTL and name chain.

    The chain runs from the question name through every CNAME to the owner of
    the A/AAAA record, so the address can be attributed to any name on it
    (the caller matches question name first). Records not reachable from the
    question name (stray glue, spoofing attempts) are ignored. TTL is the
    address record's own.
    """
    if message.question_name is None:
        return []
    cname_of: dict[str, str] = {}
    for record in message.answers:
        if record.rtype == TYPE_CNAME and record.name not in cname_of:
            cname_of[record.name] = record.value  # type: ignore[assignment]
    chain_to: dict[str, tuple[str, ...]] = {}
    chain: tuple[str, ...] = (message.question_name,)
    current = message.question_name
    while current not in chain_to:  # a CNAME loop ends here: each name is visited once
        chain_to[current] = chain
        following = cname_of.get(current)
        if following is None:
            break
        chain = chain + (following,)
        current = following
    resolved: list[tuple[IPAddress, int, tuple[str, ...]]] = []
    for record in message.answers:
        if record.rtype != TYPE_CNAME:
            owner_chain = chain_to.get(record.name)
            if owner_chain is not None:
                resolved.append((record.value, record.ttl, owner_chain))  # type: ignore[arg-type]
    return resolved
