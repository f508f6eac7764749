"""Clear a rules epoch's ct label bit from every flow before the bit tags an epoch again.

nft can set a conntrack label bit but not clear it, and epochs cycle through
marks.EPOCH_LABELS bits (compile/decision_epoch.py). A flow that was decided
EPOCH_LABELS epochs ago and is still open would carry the bit of the epoch about to
start and skip the rules it has not seen; so the bit is cleared first, through
ctnetlink (CTA_LABELS with CTA_LABELS_MASK: only that bit changes, the other tools'
labels stay). Only flows that carry the bit are written.
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


def clear_label_bit(bit: int) -> int:
    """Clear ct label `bit` on every conntrack entry that has it; how many entries were changed.
    OSError when ctnetlink refuses."""
    # Imported here: pyroute2's netlink machinery is loaded only by a daemon that needs it.
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_NEW, NFCTSocket, nfct_msg

    wanted = 1 << bit
    mask = (wanted & LOW_BITS, wanted >> 64)
    cleared = 0
    for family in FAMILIES:
        ct = NFCTSocket(nfgen_family=family)
        try:
            # The whole dump first: pyroute2 cannot send a request while a dump is being read.
            tuples = [entry.get_attr("CTA_TUPLE_ORIG") for entry in ct.dump()
                      if _as_int(entry.get_attr("CTA_LABELS")) & wanted]
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


def ready_epoch_label(epoch: int, clear: Callable[[int], int] = clear_label_bit) -> None:
    """Before `epoch` starts: if an earlier epoch used its label bit, clear the bit from every flow."""
    if epoch < marks.EPOCH_LABELS:
        return  # the bit's first use: no flow has it
    try:
        cleared = clear(epoch_label(epoch))
    except OSError as exc:
        # Flows open since that earlier epoch could miss this one's change: say so, go on with the change.
        log.warning("event=epoch_label_clear_failed epoch=%d error=%r", epoch, str(exc))
    else:
        log.info("event=epoch_label_cleared epoch=%d flows=%d", epoch, cleared)
