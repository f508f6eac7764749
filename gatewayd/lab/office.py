"""The lab office that matches policies/office.yaml: one host per interesting group."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from gatewayd.lab.topology import HostSpec

OFFICE_POLICY = Path(__file__).resolve().parents[2] / "policies" / "office.yaml"

OFFICE_HOSTS: Mapping[str, HostSpec] = {
    # key: (IPv4, IPv6, MAC); the groups are those of policies/office.yaml
    "manager": HostSpec("192.0.2.10", "2001:db8:1::1:10", "02:00:00:00:00:10"),   # managers + sales
    "sales": HostSpec("192.0.2.20", "2001:db8:1::1:20", "02:00:00:00:00:20"),     # sales (front desk)
    "service": HostSpec("192.0.2.40", "2001:db8:1::2:40", "02:00:00:00:00:40"),   # service (front desk)
    "finance": HostSpec("192.0.2.130", "2001:db8:1::3:30", "02:00:00:00:01:30"),  # finance (back office)
    "guest": HostSpec("192.0.2.200", "2001:db8:1::4:0", "02:00:00:00:02:00"),     # guest
}


def office_policy_with_work_hours(days: str, hours: str) -> str:
    """office.yaml's text with its work-hours schedule (which blocks games) changed, for schedule tests."""
    text = OFFICE_POLICY.read_text()
    changed = re.sub(r'(  work-hours:\n    days: )mon-fri\n    hours: "09:00-18:00"',
                     rf'\g<1>{days}\n    hours: "{hours}"', text)
    if changed == text:
        raise ValueError("office.yaml's work-hours schedule moved; update office_policy_with_work_hours")
    return changed
