"""Read a flow's verdict back from the gateway's kernel: its conntrack mark, decoded with the plan."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatewayd.compile import marks
from gatewayd.compile.plan import Plan
from gatewayd.lab.topology import GATEWAY, Lab


@dataclass(frozen=True)
class KernelVerdict:
    app: str
    qos_class: str
    blocked: bool


def decode_mark(plan: Plan, mark: int) -> KernelVerdict:
    return KernelVerdict(plan.numbering.app_name(marks.app_number_of(mark)),
                         plan.numbering.class_name(marks.class_index_of(mark)), bool(mark & marks.BLOCK_BIT))


def flow_mark(lab: Lab, source: str, destination: str, port: int, protocol: str = "tcp") -> int | None:
    """The ct mark of the newest flow source -> destination:port, or None if conntrack has none."""
    out = lab.run(GATEWAY, ["conntrack", "-L", "-s", source, "-d", destination, "-p", protocol,
                            "--dport", str(port)], check=False).stdout
    found = re.findall(r"mark=(\d+)", out)
    return int(found[-1]) if found else None


def learned_app(lab: Lab, plan: Plan, address: str) -> str | None:
    """The app the kernel learned for a server address from DNS, if any."""
    family = "learned_v6" if ":" in address else "learned_v4"
    learned = lab.run(GATEWAY, ["nft", "list", "map", "inet", "gatewayd", family], check=False).stdout
    found = re.search(re.escape(address) + r" [^,}]*?: goto set_app_(\d+)", learned)
    return plan.numbering.app_name(int(found.group(1))) if found else None
