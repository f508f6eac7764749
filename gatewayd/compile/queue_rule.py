"""The one rule that hands undecided packets to the classifier (NFQUEUE).

The classify chain marks such packets with QUEUE_REQUEST; this rule queues
every packet so marked. Where the kernel has native nft `queue`, it is a
chain of gatewayd's own table; where it has not (only the xt NFQUEUE target,
as on our CI kernel), it is an iptables-nft chain of gatewayd's own in the
`filter` table, jumped to from FORWARD. apply/queue_rule.py probes and picks.

Fail-open: `bypass` lets packets through when no process listens on the
queue (daemon stopped or crashed). Fail-closed sites drop them instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.compile import marks
from gatewayd.compile.kernel_names import QUEUE_IPTABLES_CHAIN


@dataclass(frozen=True)
class QueueRule:
    queue_num: int
    bypass: bool  # fail_mode open

    @property
    def mark_match(self) -> str:
        return f"0x{marks.QUEUE_REQUEST:x}/0x{marks.QUEUE_REQUEST:x}"

    def iptables_restore(self) -> str:
        """iptables-restore --noflush input: our chain rebuilt, FORWARD jump added by apply."""
        target = f"-j NFQUEUE --queue-num {self.queue_num}" + (" --queue-bypass" if self.bypass else "")
        return "\n".join([
            "*filter",
            f":{QUEUE_IPTABLES_CHAIN} - [0:0]",
            f"-F {QUEUE_IPTABLES_CHAIN}",
            f"-A {QUEUE_IPTABLES_CHAIN} -m mark --mark {self.mark_match} {target}",
            "COMMIT",
            "",
        ])

    def nft_statement(self) -> str:
        bypass = " bypass" if self.bypass else ""
        return (f"meta mark & 0x{marks.QUEUE_REQUEST:08x} != 0 "
                f"queue num {self.queue_num}{bypass}")

    def render(self) -> str:
        return ("# NFQUEUE hand-off (native nft queue if the kernel has it, else iptables-nft):\n"
                f"#   nft:      {self.nft_statement()}\n"
                + "".join(f"#   iptables: {line}\n" for line in self.iptables_restore().splitlines()
                          if line.startswith("-A")))
