"""What a learned-address write costs the kernel side, and what the writer's book holds at its bound (root).

Issue 14: the writer's book (apply/learned_writer.py) is a bounded cache since every
write replaces whatever the learned maps hold (NFT_MSG_DESTROYSETELEM + NEWSETELEM in
one transaction, apply/learned_netlink.py). Printed, from one run:

* microseconds per element of a batch, in a network namespace of its own (`unshare
  -n`) with maps declared like the learned maps: nft's text `add element` through
  libnftables (the previous writer's path), a plain NEWSETELEM batch over netlink, the
  destroy + add batch of new addresses, and of addresses present with another chain;
  rounds alternate, the range over rounds is printed (2 shared cores: noisy);
* the book at its bound (tracemalloc): bytes per entry and MiB, IPv4 and IPv6 keys,
  beside the previous book's str-keyed tuples.

    python bench/learned_writes.py [--batch 512] [--rounds 7]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 1024 * 1024


def kernel_side(batch: int, rounds: int) -> dict[str, list[float]]:
    """Run in a namespace of its own: µs per element for each way of writing, one figure per round."""
    import nftables

    from gatewayd.apply.learned_netlink import LearnedMapSocket, element_key, goto_data
    from gatewayd.apply.nfqueue_config import NETLINK_NETFILTER
    from gatewayd.apply.nft import LearnedElement, NftKernel
    from gatewayd.apply.set_elements_netlink import (
        NFNL_MSG_BATCH_BEGIN,
        NFNL_MSG_BATCH_END,
        NFT_MSG_NEWSETELEM,
        NLM_F_CREATE,
        added_element,
        batch_marker,
        element_list_message,
    )
    from gatewayd.apply.tc_netlink import acknowledgements
    from gatewayd.compile.ruleset import LEARNED_MAP_SIZE

    nft = NftKernel(nftables.Nftables)
    nft.run(f"table inet gatewayd {{\n  chain set_app_1 {{\n  }}\n  chain set_app_2 {{\n  }}\n"
            f"  map learned_v4 {{\n    type ipv4_addr : verdict; flags timeout; size {LEARNED_MAP_SIZE};\n  }}\n}}\n")
    maps = LearnedMapSocket("inet", "gatewayd")
    import socket
    plain = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    plain.bind((0, 0))

    def addresses(start: int) -> list[str]:
        return [str(ipaddress.IPv4Address(0x0A000000 + start + n)) for n in range(batch)]

    def plain_add(elements: list[tuple[str, str, int]], sequence: int) -> None:
        body = b"".join(added_element(element_key(a), t, goto_data(c)) for a, c, t in elements)
        frames = (batch_marker(NFNL_MSG_BATCH_BEGIN, sequence)
                  + element_list_message(NFT_MSG_NEWSETELEM, NLM_F_CREATE, "inet", "gatewayd", "learned_v4",
                                         body, sequence + 1)
                  + batch_marker(NFNL_MSG_BATCH_END, sequence + 2))
        plain.sendall(frames)
        while True:
            codes = dict(acknowledgements(plain.recv(1 << 16)))
            if sequence + 1 in codes:
                assert codes[sequence + 1] == 0, codes
                return

    figures: dict[str, list[float]] = {"nft add (libnftables text)": [], "netlink add": [],
                                       "netlink destroy+add, new": [], "netlink destroy+add, present": []}
    start = 0
    for round_ in range(rounds):
        for name in figures:
            chain = "set_app_2" if name.endswith("present") else "set_app_1"
            if not name.endswith("present"):
                start += batch
            elements = [(a, chain, 300) for a in addresses(start)]  # present: the last new batch's addresses
            began = time.perf_counter()
            if name.startswith("nft"):
                nft.write_learned([("learned_v4", [LearnedElement(*e) for e in elements])])
            elif name == "netlink add":
                plain_add(elements, 1_000_000 + round_ * 10)
            else:
                maps.replace([("learned_v4", elements)])
            figures[name].append((time.perf_counter() - began) * 1e6 / batch)
    listed = nft.query("list map inet gatewayd learned_v4")
    held = sum(len(item.get("map", {}).get("elem", [])) for item in listed)
    assert held == start, (held, start)  # every batch landed: each round's new addresses, replaced in place
    return figures


def book_figures(entries: int) -> dict[str, float]:
    from gatewayd.apply.learned_writer import LearnedAddressBook
    from gatewayd.classify.engine import LearnedAddress

    result = {}
    for family, base in (("IPv4", ipaddress.ip_address("10.0.0.0")), ("IPv6", ipaddress.ip_address("2001:db8::"))):
        batch = [LearnedAddress(base + n, f"app{n % 50}", 300, "x") for n in range(entries)]
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        book = LearnedAddressBook(max_entries=entries)
        book.record(batch, 1000.0)
        result[f"book {family}"] = (tracemalloc.get_traced_memory()[0] - before) / entries
        tracemalloc.stop()
        del book
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        previous = {str(e.address): (e.app, 1000.0 + e.ttl) for e in batch}  # the previous book's entries
        result[f"previous book {family}"] = (tracemalloc.get_traced_memory()[0] - before) / entries
        tracemalloc.stop()
        del previous
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_namespace:
        print(json.dumps(kernel_side(args.batch, args.rounds)))
        return 0
    done = subprocess.run(["unshare", "-n", sys.executable, __file__, "--in-namespace", "--batch", str(args.batch),
                           "--rounds", str(args.rounds)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    figures: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"learned-map writes, batches of {args.batch} IPv4 elements, {args.rounds} rounds (µs per element):")
    for name, values in figures.items():
        ordered = sorted(values)
        print(f"  {name:32} median {ordered[len(ordered) // 2]:6.2f}   range {ordered[0]:6.2f} - {ordered[-1]:6.2f}")
    from gatewayd.apply.learned_writer import BOOK_ENTRIES
    from gatewayd.compile.ruleset import LEARNED_MAP_SIZE

    books = book_figures(BOOK_ENTRIES)
    print(f"writer's book at its bound, {BOOK_ENTRIES:,} entries (tracemalloc):")
    for family in ("IPv4", "IPv6"):
        per_entry = books[f"book {family}"]
        before = books[f"previous book {family}"]
        print(f"  {family}: {per_entry:6.1f} bytes/entry = {per_entry * BOOK_ENTRIES / MIB:5.1f} MiB"
              f"   (previous book: {before:6.1f} bytes/entry, {before * LEARNED_MAP_SIZE / MIB:5.1f} MiB"
              f" at its {LEARNED_MAP_SIZE:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
