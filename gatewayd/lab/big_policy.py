"""A big policy for reload benchmarks and tests: office.yaml plus thousands of hosts and blocked domains."""

from __future__ import annotations

import re

from gatewayd.lab.office import OFFICE_POLICY

HOSTS_PER_GROUP = 1000


def big_policy(hosts: int, domains: int, variant: int) -> str:
    """office.yaml + `hosts` single IPv6 hosts in groups + `domains` blocked domains; `variant` changes a rate."""
    text = OFFICE_POLICY.read_text()
    groups = []
    for start in range(0, hosts, HOSTS_PER_GROUP):
        numbers = range(start + 1, min(hosts, start + HOSTS_PER_GROUP) + 1)
        members = "\n".join(f"      - 2001:db8:5::{number:x}" for number in numbers)
        groups.append(f"  branch-{start // HOSTS_PER_GROUP}:\n    members:\n{members}\n")
    blocklist = "\n".join(f"      - blocked{number}.example.com" for number in range(domains))
    app = f"  blocklist:\n    name: Blocked sites\n    category: ads\n    domains:\n{blocklist}\n"
    rule = "  - name: no-blocked-sites\n    categories: [ads]\n    action: block\n"
    for marker, addition in (("\ngroups:\n", "".join(groups)), ("\napplications:\n", app), ("\nrules:\n", rule)):
        assert marker in text, f"office.yaml has no {marker.strip()} section; update the benchmark"
        text = text.replace(marker, marker + addition, 1)
    # Each reload really changes something: the bulk class's guarantee.
    text, changed = re.subn(r"(?m)^(  bulk:\s*\{\s*priority: 7, guaranteed: )\d+%", rf"\g<1>{4 + variant % 3}%", text)
    assert changed == 1, "office.yaml's bulk class moved; update the benchmark"
    return text
