"""What the running kernel offers gatewayd: probed once at start, logged once, reported.

Three features change how gatewayd installs its state; where one is missing,
gatewayd degrades and says so (README: "Probes, then degrades with a log line"):

  native_queue         nft's `queue` statement. Without it the NFQUEUE rule goes
                       into an iptables-nft chain of gatewayd's own (apply/queue_rule.py).
  leaf_qdisc           the best HTB leaf queue: cake, then fq_codel, sfq, bfifo. A
                       leaf kind can only be tried on an HTB class, so it is settled
                       on the first leaf of the first apply (apply/tc.py) and kept.
  strict_tcp_tracking  net.netfilter.nf_conntrack_tcp_loose is 0 or may be set to 0;
                       the SYN proxy needs it (require_strict_tcp_tracking).

The daemon logs them in one line after its first apply, metrics/kernel_features.py
exports them as gatewayd_kernel_feature{feature=...}, and `gatewayd status` shows them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gatewayd.apply.nft import NftError, NftKernel
from gatewayd.compile.kernel_names import (
    PROBE_TABLE_NAME,
    QUEUE_IPTABLES_CHAIN,
    TABLE_FAMILY,
)
from gatewayd.compile.plan import Plan
from gatewayd.compile.tc_tree import FIFO_KIND, LEAF_PREFERENCE

log = logging.getLogger("gatewayd.features")

TCP_LOOSE = Path("/proc/sys/net/netfilter/nf_conntrack_tcp_loose")


class StrictTrackingError(RuntimeError):
    """The policy uses the SYN proxy and conntrack cannot be made strict."""


@dataclass(frozen=True)
class KernelFeatures:
    native_queue: bool
    strict_tcp_tracking: bool
    leaf_qdisc: str | None = None  # None until the first HTB leaf is made

    @property
    def queue_backend(self) -> str:
        return "nft" if self.native_queue else "iptables-nft"

    def report(self) -> dict[str, bool | str | None]:
        """The facts as plain data, for `gatewayd status`."""
        return {"native_queue": self.native_queue, "queue_backend": self.queue_backend,
                "leaf_qdisc": self.leaf_qdisc, "strict_tcp_tracking": self.strict_tcp_tracking}

    def gauges(self) -> dict[str, int]:
        """feature -> 1 (present) or 0 (missing), for gatewayd_kernel_feature.

        Leaf kinds: 1 for the kind the leaves use, 0 for the better kinds the
        kernel lacks; kinds below the one in use were never tried, so they are left out.
        """
        values = {"native_queue": int(self.native_queue), "strict_tcp_tracking": int(self.strict_tcp_tracking)}
        if self.leaf_qdisc in LEAF_PREFERENCE:
            for kind in LEAF_PREFERENCE[:LEAF_PREFERENCE.index(self.leaf_qdisc) + 1]:
                values[f"leaf_qdisc_{kind}"] = int(kind == self.leaf_qdisc)
        return values


def probe_native_queue(kernel: NftKernel) -> bool:
    """Create and delete a scratch table in one transaction: the kernel checks the rule, nothing stays."""
    probe = (f"table {TABLE_FAMILY} {PROBE_TABLE_NAME} {{ chain c {{ type filter hook forward priority 0; "
             f"queue num 0 bypass; }} }}\ndelete table {TABLE_FAMILY} {PROBE_TABLE_NAME}\n")
    try:
        kernel.run(probe)
        return True
    except NftError:
        return False


def probe_strict_tcp_tracking(sysctl: Path = TCP_LOOSE) -> bool:
    """Strict already, or the sysctl may be written (not on a read-only /proc/sys)."""
    try:
        return sysctl.read_text().strip() == "0" or os.access(sysctl, os.W_OK)
    except OSError:  # no conntrack, or /proc/sys hidden from the service
        return False


def probe_kernel_features(kernel: NftKernel) -> KernelFeatures:
    """The features that can be probed before anything is installed (the leaf kind comes later)."""
    return KernelFeatures(native_queue=probe_native_queue(kernel), strict_tcp_tracking=probe_strict_tcp_tracking())


def choose_leaf_qdisc(add_leaf: Callable[[str], bool]) -> str:
    """The first kind in LEAF_PREFERENCE that `add_leaf` could add (False: the kernel lacks it)."""
    for kind in LEAF_PREFERENCE:
        if add_leaf(kind) or kind == FIFO_KIND:
            return kind
    return FIFO_KIND


def log_kernel_features(features: KernelFeatures) -> None:
    """One line at start: what the kernel has, and what gatewayd does without what it lacks."""
    degraded = []
    if not features.native_queue:
        degraded.append(f"no native nft queue: the NFQUEUE rule is in iptables-nft chain {QUEUE_IPTABLES_CHAIN}")
    if features.leaf_qdisc in LEAF_PREFERENCE and features.leaf_qdisc != LEAF_PREFERENCE[0]:
        lacking = ",".join(LEAF_PREFERENCE[:LEAF_PREFERENCE.index(features.leaf_qdisc)])
        degraded.append(f"no {lacking}: leaves are {features.leaf_qdisc}, "
                        "latency under load depends on HTB priorities alone")
    if not features.strict_tcp_tracking:
        degraded.append("nf_conntrack_tcp_loose cannot be set to 0: a policy with a SYN proxy will not apply")
    line = "event=kernel_features native_queue=%s leaf_qdisc=%s strict_tcp_tracking=%s"
    values = [_yes_no(features.native_queue), features.leaf_qdisc or "none", _yes_no(features.strict_tcp_tracking)]
    if degraded:
        line += ' degraded="%s"'
        values.append("; ".join(degraded))
    log.log(logging.WARNING if degraded else logging.INFO, line, *values)


def _yes_no(present: bool) -> str:
    return "yes" if present else "no"


def require_strict_tcp_tracking(plan: Plan, sysctl: Path = TCP_LOOSE) -> None:
    """The SYN proxy needs conntrack to call a mid-stream ACK "invalid" (not adopt it):
    that is how the handshake's last ACK reaches synproxy. Only set when it is used."""
    security = plan.policy.security
    if security is None or not security.syn_proxy_ports:
        return
    try:
        if sysctl.read_text().strip() != "0":
            sysctl.write_text("0")
            log.info("event=sysctl_set name=net.netfilter.nf_conntrack_tcp_loose value=0 reason=syn_proxy")
    except OSError as exc:
        raise StrictTrackingError(
            f"the SYN proxy needs net.netfilter.nf_conntrack_tcp_loose=0 and it cannot be set: {exc}") from exc
