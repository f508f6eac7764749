"""The hand-packed rtnetlink messages for HTB classes: layout as the kernel's structs want it."""

from __future__ import annotations

import struct

from gatewayd.apply.tc import fifo_limit_bytes
from gatewayd.apply.tc_netlink import (
    HEADER,
    RTM_DELQDISC,
    RTM_DELTCLASS,
    RTM_NEWQDISC,
    RTM_NEWTCLASS,
    TC_H_ROOT,
    TCMSG,
    HtbParams,
    acknowledgements,
    class_request,
    delete_root_request,
    htb_options,
    root_htb_request,
)


def test_the_htb_root_packs_as_tc_htb_glob_with_its_default_class() -> None:
    request = root_htb_request(7, 0x10000, 0x12)
    assert request.message_type == RTM_NEWQDISC
    _family, _p1, _p2, ifindex, handle, parent, _info = TCMSG.unpack_from(request.body)
    assert (ifindex, handle, parent) == (7, 0x10000, TC_H_ROOT)
    offset = TCMSG.size
    kind_length, _ = struct.unpack_from("=HH", request.body, offset)
    assert request.body[offset + 4:offset + kind_length] == b"htb\0"
    offset += (kind_length + 3) & ~3
    _options_length, options_kind = struct.unpack_from("=HH", request.body, offset)
    init_length, init_kind = struct.unpack_from("=HH", request.body, offset + 4)
    assert (options_kind, init_kind, init_length) == (2, 2, 4 + 20)  # TCA_OPTIONS { TCA_HTB_INIT: tc_htb_glob }
    assert struct.unpack_from("=IIIII", request.body, offset + 8) == (3, 10, 0x12, 0, 0)  # version, r2q, default


def test_deleting_the_root_names_no_handle() -> None:
    request = delete_root_request(7)
    assert request.message_type == RTM_DELQDISC
    assert TCMSG.unpack_from(request.body)[3:6] == (7, 0, TC_H_ROOT)


def test_htb_parameters_pack_as_tc_htb_opt() -> None:
    options = htb_options(HtbParams(rate_bps=8_000_000, ceil_bps=16_000_000, burst_bytes=2000,
                                    cburst_bytes=4000, quantum_bytes=1514, priority=3))
    length, kind = struct.unpack_from("=HH", options)
    assert (length, kind) == (4 + 44, 1)  # TCA_HTB_PARMS, sizeof(struct tc_htb_opt)
    rate = struct.unpack_from("=BBHhHI", options, 4)
    ceil = struct.unpack_from("=BBHhHI", options, 16)
    assert rate[1] == 1 and rate[5] == 1_000_000 and ceil[5] == 2_000_000  # ethernet link layer, bytes/s
    buffer, cbuffer, quantum, _level, priority = struct.unpack_from("=IIIII", options, 28)
    assert buffer == 2000 * 1_000_000_000 // 1_000_000 // 64  # 2 ms in 64 ns ticks
    assert cbuffer == 4000 * 1_000_000_000 // 2_000_000 // 64
    assert (quantum, priority) == (1514, 3)


def test_rates_above_32_bits_carry_64_bit_attributes() -> None:
    options = htb_options(HtbParams(40_000_000_000, 40_000_000_000, 10**6, 10**6, 200_000, 0))
    kinds = []
    offset = 0
    while offset < len(options):
        length, kind = struct.unpack_from("=HH", options, offset)
        kinds.append(kind)
        offset += (length + 3) & ~3
    assert kinds == [1, 6, 7]  # PARMS, RATE64, CEIL64


def test_class_requests_name_their_class_and_delete_has_no_options() -> None:
    add = class_request("add", 7, 0x1_1000, 0x1_0108, HtbParams(1, 1, 1, 1, 1514, 0), rate_estimator=True)
    assert add.message_type == RTM_NEWTCLASS and add.what == "add class 1:1000"
    assert TCMSG.unpack_from(add.body)[3:6] == (7, 0x1_1000, 0x1_0108)
    delete = class_request("delete", 7, 0x1_1000, 0x1_0108)
    assert delete.message_type == RTM_DELTCLASS and len(delete.body) == TCMSG.size


def test_acknowledgements_are_matched_by_sequence() -> None:
    ok = HEADER.pack(HEADER.size + 4 + HEADER.size, 2, 0, 41, 0) + struct.pack("=i", 0) + bytes(HEADER.size)
    refused = HEADER.pack(HEADER.size + 4 + HEADER.size, 2, 0, 42, 0) + struct.pack("=i", -17) + bytes(HEADER.size)
    assert list(acknowledgements(ok + refused)) == [(41, 0), (42, -17)]


def test_fifo_leaves_hold_about_50_ms_at_their_ceiling_in_bytes() -> None:
    assert fifo_limit_bytes(100_000_000) == 625_000  # 50 ms at 100 Mbit/s
    assert fifo_limit_bytes(1_000_000_000) == 6_250_000
    assert fifo_limit_bytes(2_000_000) == 4 * 65536  # the floor: a few GRO aggregates always fit
