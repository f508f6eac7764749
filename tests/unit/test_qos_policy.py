"""The QoS parts of the policy format: per-direction classes, group and per-host rates, connection caps.

Every impossible policy is refused with FILE:LINE:COL pointing at the value to fix.
"""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from gatewayd.policy import PolicyError
from gatewayd.policy.bandwidth import group_pair, host_pair, limited_directions
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.model import Bandwidth

HEAD = """\
version: 1
interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
classes:
  realtime: { priority: 0, guaranteed: 20% }
  default: { priority: 3 }
"""


def policy_of(body: str):
    return load_policy_text(HEAD + textwrap.dedent(body), "qos.yaml")


def issues_of(body: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        policy_of(body)
    return [str(issue) for issue in caught.value.issues]


def test_group_bandwidth_per_host_limits_exceptions_and_caps_parse() -> None:
    policy = policy_of("""\
        groups:
          guest:
            members: [192.0.2.192/29]
            bandwidth: { guaranteed: 10%, limit: 50% }
            per_host:
              upload: { limit: 1mbit }
              download: { guaranteed: 256kbit, limit: 2mbit }
            exceptions:
              192.0.2.194: { download: { limit: 8mbit } }
            max_connections: 50
        """)
    guest = policy.groups["guest"]
    assert guest.qos.max_connections == 50
    assert limited_directions(guest) == ("upload", "download")
    assert group_pair(guest, "download", 50_000_000).limit_bps == 25_000_000
    assert group_pair(guest, "upload", 20_000_000).guaranteed_bps == 2_000_000
    plain = host_pair(guest, "download", 50_000_000, ipaddress.ip_address("192.0.2.193"))
    excepted = host_pair(guest, "download", 50_000_000, ipaddress.ip_address("192.0.2.194"))
    assert (plain.guaranteed_bps, plain.limit_bps) == (256_000, 2_000_000)
    assert (excepted.guaranteed_bps, excepted.limit_bps) == (256_000, 8_000_000)
    assert host_pair(guest, "upload", 20_000_000).limit_bps == 1_000_000


def test_class_direction_override_replaces_only_what_it_names() -> None:
    policy = load_policy_text(HEAD.replace("default: { priority: 3 }",
                                           "default: { priority: 3, limit: 80%, download: { limit: 40% } }"),
                              "qos.yaml")
    default = policy.classes["default"]
    assert default.rates("upload") == (Bandwidth(bits_per_second=0), Bandwidth(share=0.8))
    assert default.rates("download")[1] == Bandwidth(share=0.4)


@pytest.mark.parametrize(("body", "expected"), [
    ("""\
        groups:
          a: { members: [192.0.2.0/28], bandwidth: { guaranteed: 60%, limit: 40% } }
        """, ["qos.yaml:7:58: guaranteed 60% of 'bandwidth' of group 'a' is more than its limit 40%"]),
    ("""\
        groups:
          a: { members: [192.0.2.0/28], bandwidth: { guaranteed: 70% } }
          b: { members: [192.0.2.16/28], bandwidth: { guaranteed: 40% } }
        """, ["qos.yaml:8:59: guarantees of the groups add up to 22mbit on the upload link (with group 'b'), "
              "more than its 20mbit",
              "qos.yaml:8:59: guarantees of the groups add up to 55mbit on the download link"]),
    ("""\
        groups:
          a:
            members: [192.0.2.0/28]
            bandwidth: { limit: 10mbit }
            per_host: { download: { limit: 20mbit } }
        """, ["qos.yaml:10:36: per-host limit 20mbit of group 'a' is above the group's ceiling 10mbit "
              "on the download link"]),
    ("""\
        groups:
          a:
            members: [192.0.2.0/28]
            per_host: { guaranteed: 5mbit }
        """, ["qos.yaml:9:29: per-host guarantees of group 'a' add up to 70mbit (14 hosts) on the upload link, "
              "more than the group's ceiling 20mbit",
              "qos.yaml:9:29: per-host guarantees of group 'a' add up to 70mbit (14 hosts) on the download link"]),
    ("""\
        groups:
          a:
            members: [192.0.2.0/28]
            per_host: { limit: 1mbit }
            exceptions: { 192.0.2.99: { limit: 2mbit } }
        """, ["qos.yaml:10:19: exception '192.0.2.99' of group 'a' is not a member of the group"]),
    ("""\
        groups:
          a:
            members: [192.0.2.0/28, "02:00:00:00:00:01"]
            per_host: { limit: 1mbit }
        """, ["qos.yaml:9:5: per-host limits of group 'a' need addresses, but the group has MAC members"]),
    ("""\
        groups:
          a: { members: [192.0.2.0/28], max_connections: 0 }
        """, ["qos.yaml:7:50: 'max_connections' of group 'a' is 0, out of range (expected 1 to 1000000)"]),
    ("""\
        groups:
          a: { members: [192.0.2.0/28], per_host: { limt: 1mbit } }
        """, ["qos.yaml:7:45: unknown key 'limt' in 'per_host' of group 'a'"]),
])
def test_impossible_qos_is_refused_at_the_value_to_fix(body: str, expected: list[str]) -> None:
    issues = issues_of(body)
    assert len(issues) == len(expected), issues
    for issue, prefix in zip(issues, expected, strict=True):
        assert issue.startswith(prefix), issue


def test_class_override_above_its_limit_is_refused() -> None:
    text = HEAD.replace("default: { priority: 3 }", "default: { priority: 3, upload: { guaranteed: 90% } }")
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "qos.yaml")
    messages = [str(issue) for issue in caught.value.issues]
    assert messages == ["qos.yaml:5:49: guaranteed rates of all classes add up to 22mbit on the upload link, "
                        "more than its 20mbit"], messages
