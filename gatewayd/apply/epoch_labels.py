"""Clear rules-epoch ct label bits from every flow before they could tag an epoch wrongly.

nft can set a conntrack label bit but not clear it, and epochs cycle through
marks.EPOCH_LABELS bits (compile/decision_epoch.py). A flow that was decided
EPOCH_LABELS epochs ago and is still open would carry the bit of the epoch about to
start and skip the rules it has not seen; so the bit is cleared first. The same for
every epoch bit at the daemon's first apply (flows from an earlier run carry bits of
its epochs) and at an HA takeover (conntrackd brings the peer's flows with the peer's
bits: apply/ha_takeover.py). Through ctnetlink, CTA_LABELS with CTA_LABELS_MASK: only
those bits change, the other tools' labels stay; only flows that carry one are written.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from gatewayd.compile import marks
from gatewayd.compile.decision_epoch import epoch_label

log = logging.getLogger("gatewayd.apply")

FAMILIES = (socket.AF_INET, socket.AF_INET6)
LOW_BITS = 0xFFFF_FFFF_FFFF_FFFF


def _as_int(labels: Any) -> int:
    """pyroute2 decodes CTA_LABELS as an int, or a (low, high) pair of 64-bit words."""
    if isinstance(labels, tuple):
        return int(labels[0]) | int(labels[1]) << 64
    return int(labels or 0)


def clear_label_bits(bits: int) -> int:
    """Clear the ct label bits set in `bits` (a 128-bit mask) on every conntrack entry that has one;
    how many entries were changed. OSError when ctnetlink refuses."""
    # Imported here: pyroute2's netlink machinery is loaded only by a daemon that needs it.
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_NEW, NFCTSocket, nfct_msg

    mask = (bits & LOW_BITS, bits >> 64)
    cleared = 0
    for family in FAMILIES:
        ct = NFCTSocket(nfgen_family=family)
        try:
            # The whole dump first: pyroute2 cannot send a request while a dump is being read.
            tuples = [entry.get_attr("CTA_TUPLE_ORIG") for entry in ct.dump()
                      if _as_int(entry.get_attr("CTA_LABELS")) & bits]
            for original in tuples:
                update = nfct_msg()
                update["nfgen_family"] = family
                update["attrs"] = [["CTA_TUPLE_ORIG", original], ["CTA_LABELS", {"value": (0, 0)}],
                                   ["CTA_LABELS_MASK", {"value": mask}]]
                try:
                    ct.request(update, IPCTNL_MSG_CT_NEW, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
                    cleared += 1
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # the flow ended meanwhile: nothing to clear
                        raise OSError(exc.code, f"conntrack update: {exc}") from exc
        except NetlinkError as exc:
            raise OSError(exc.code, f"conntrack dump: {exc}") from exc
        finally:
            ct.close()
    return cleared


def ready_epoch_label(epoch: int, *, first_of_run: bool, clear: Callable[[int], int] = clear_label_bits) -> None:
    """Before `epoch` starts: the first of a run clears every epoch bit; later, an epoch whose bit an
    earlier epoch used clears that bit."""
    if first_of_run:
        bits = marks.EPOCH_LABEL_MASK
    elif epoch >= marks.EPOCH_LABELS:
        bits = 1 << epoch_label(epoch)
    else:
        return  # the bit's first use in this run, and no flow kept one from before it
    try:
        cleared = clear(bits)
    except OSError as exc:
        # Flows that carry such a bit could miss this epoch's change: say so, go on with the change.
        log.warning("event=epoch_label_clear_failed epoch=%d error=%r", epoch, str(exc))
    else:
        log.info("event=epoch_labels_cleared epoch=%d flows=%d", epoch, cleared)
