"""Put learned addresses into the kernel's learned maps whatever the maps hold for them now.

An nft `add element` refuses the whole transaction (EEXIST) for an address the
map holds with another chain, so a writer that adds must know what the kernel
holds, which costs memory for every address it ever wrote (issue 14: ~43 MiB at
the learned maps' size). A destroy + add of the same addresses in one transaction
(set_elements_netlink.py, Linux >= 6.3) leaves exactly the new elements, whatever
was there. Then the writer's memory of what it wrote
(learned_writer.LearnedAddressBook) is only a cache that saves re-sending, and may
forget.

A kernel without the destroy turns this off with one log line; the caller then
falls back to nft's add, element by element where one clashes
(NftKernel.write_learned).
"""

from __future__ import annotations

import functools
import logging
import socket
import struct
from collections.abc import Sequence

from gatewayd.apply.nft import LearnedElement, NftError, NftKernel
from gatewayd.apply.set_elements_netlink import (
    NFTA_DATA_VERDICT,
    NFTA_SET_ELEM_DATA,
    DestroyUnsupported,
    ElementBatchError,
    ElementSocket,
    ElementWrite,
    added_element,
    key_attribute,
    nested,
    replace_elements_batch,
    strz,
)
from gatewayd.apply.tc_netlink import encode_attribute
from gatewayd.compile.kernel_names import TABLE_FAMILY, TABLE_NAME

log = logging.getLogger("gatewayd.learned")

NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFT_GOTO = -4

# (address, chain, timeout in seconds): one element of a learned map.
Element = tuple[str, str, int]


def element_key(address: str) -> bytes:
    """The key of a learned map's element: the address in network order, as the set's key type holds it."""
    return key_attribute(socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address))


@functools.lru_cache(maxsize=1024)  # one per app chain of the table in force
def goto_data(chain: str) -> bytes:
    verdict = (encode_attribute(NFTA_VERDICT_CODE, struct.pack("!i", NFT_GOTO))
               + encode_attribute(NFTA_VERDICT_CHAIN, strz(chain)))
    return nested(NFTA_SET_ELEM_DATA, nested(NFTA_DATA_VERDICT, verdict))


def learned_write(family: str, table: str, map_name: str, elements: Sequence[Element]) -> ElementWrite:
    keys = [element_key(address) for address, _chain, _timeout in elements]
    return ElementWrite(family, table, map_name, keys,
                        [added_element(key, timeout, goto_data(chain))
                         for key, (_, chain, timeout) in zip(keys, elements, strict=True)])


def replace_batch(family: str, table: str, maps: Sequence[tuple[str, Sequence[Element]]],
                  first_sequence: int) -> tuple[bytes, dict[int, str]]:
    """One nf_tables transaction that destroys then adds every element of every map; and what each
    acknowledged message was ("destroy" or "add", by sequence number)."""
    return replace_elements_batch([learned_write(family, table, name, elements) for name, elements in maps],
                                  first_sequence)


class LearnedMapSocket:
    """A netlink socket for the learned maps' transactions (one thread's: the learned writer's)."""

    def __init__(self, family: str, table: str) -> None:
        self._family = family
        self._table = table
        self._socket = ElementSocket()

    def close(self) -> None:
        self._socket.close()

    def replace(self, maps: Sequence[tuple[str, Sequence[Element]]]) -> None:
        """Destroy and add the elements in one transaction; ElementBatchError if the kernel refused it
        (nothing of it applied), OSError if the socket failed."""
        self._socket.replace([learned_write(self._family, self._table, name, elements)
                              for name, elements in maps])


class KernelLearnedMaps:
    """The learned writer's kernel side: destroy + add over netlink where the kernel has the destroy,
    else nft's add (NftKernel.write_learned). Used from the writer's thread only."""

    def __init__(self, nft: NftKernel, maps_socket: LearnedMapSocket | None = None) -> None:
        self._socket = maps_socket if maps_socket is not None else LearnedMapSocket(TABLE_FAMILY, TABLE_NAME)
        self._nft = nft
        self.destroy_supported = True

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        """NftError when the kernel refused the batch (nothing of it applied)."""
        if self.destroy_supported:
            maps = [(name, [(e.address, e.chain, e.timeout_seconds) for e in elements]) for name, elements in batches]
            try:
                self._socket.replace(maps)
                return
            except DestroyUnsupported:
                self.destroy_supported = False
                self._socket.close()
                log.warning("event=learned_destroy_unsupported fallback=nft_add detail=%r",
                            "no NFT_MSG_DESTROYSETELEM (Linux < 6.3): an address whose app changed costs a "
                            "transaction of its own")
            except (ElementBatchError, OSError) as exc:
                raise NftError(str(exc)) from exc
        self._nft.write_learned(batches)
