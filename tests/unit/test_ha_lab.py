"""The HA lab's readings, without root: the notify log and the probe's gaps (bench/ha.py prints them)."""

from __future__ import annotations

from gatewayd.lab.ha_pair import ProbeResult, notify_times

NOTIFY_LOG = """\
notify_started at=100.50 ha-notify master --node gw-a --conntrackd-config /x/conntrackd.conf --hold lan0,wan0
node=gw-a state=master step=hold ok=true seconds=0.003 at=100.900
notify_started at=101.00 ha-notify backup --node gw-b --conntrackd-config /y/conntrackd.conf --hold lan0,wan0
node=gw-a state=master step=commit ok=true seconds=0.004 at=100.950
node=gw-b state=backup step=hold ok=true seconds=0.004 at=101.300
notify_started at=110.00 ha-notify master --node gw-b --conntrackd-config /y/conntrackd.conf --hold lan0,wan0
node=gw-b state=master step=commit ok=false seconds=5.000 at=115.400
node=gw-b state=master step=release ok=true seconds=0.001 at=115.410
"""


def test_notify_times_are_the_nodes_last_notify_of_that_state_with_interleaved_lines_of_the_other_node() -> None:
    assert notify_times(NOTIFY_LOG, "gw-a", "master") == {"started": 100.5, "hold": 100.9, "commit": 100.95}
    assert notify_times(NOTIFY_LOG, "gw-b", "master") == {"started": 110.0, "commit": 115.4, "release": 115.41}
    assert notify_times(NOTIFY_LOG, "gw-b", "backup") == {"started": 101.0, "hold": 101.3}
    assert notify_times(NOTIFY_LOG, "gw-a", "fault") == {}
    assert notify_times("", "gw-a", "master") == {}


def test_probe_gaps_between_two_times() -> None:
    probe = ProbeResult(sent=10, received=8, longest_gap=2.5, first_echo=1.0, last_echo=9.0,
                        longest_gap_end=50.0, gaps=((20.0, 0.1), (50.0, 2.5), (70.0, 0.4)))
    assert probe.longest_gap_in(after=10.0, before=60.0) == (50.0, 2.5)
    assert probe.longest_gap_after(55.0) == 0.4  # the failover's gap ended before: not counted
    assert probe.longest_gap_in(after=80.0) == (0.0, 0.0)
