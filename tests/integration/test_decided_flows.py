"""Decided flows skip the policy rules until a new rules epoch, and every epoch reaches them.

compile/decision_epoch.py: a decided flow runs the rules once per epoch; the daemon starts an
epoch on every reload and just after every schedule boundary. The reload half (a newly blocked
app is cut within a second) is test_reload_live.py; here the kernel's rule counters and a
schedule boundary crossed by an open flow.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewayd.lab.gateway import running_gatewayd
from gatewayd.lab.long_flows import LongDownloads
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY, office_policy_with_work_hours
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab

pytestmark = pytest.mark.integration

GAME = DEFAULT_SITES["steam"]  # blocked by office.yaml's work-hours rule while its schedule runs
OTHER = DEFAULT_SITES["news"]  # no schedule: must not notice the boundary
REPO = Path(__file__).resolve().parents[2]
BOUNDARY_LEAD_SECONDS = 20  # at least this long between the daemon's start and the boundary


def rule_packets(nft_json: str) -> dict[str, int]:
    """Packets per policy-rule counter of `nft -j list counters table inet gatewayd`."""
    counters = (item["counter"] for item in json.loads(nft_json)["nftables"] if "counter" in item)
    return {c["name"]: int(c["packets"]) for c in counters if c["name"].startswith("rule_")}


def test_packets_of_a_decided_flow_do_not_walk_the_rules(tmp_path: Path) -> None:
    with Lab(hosts=OFFICE_HOSTS) as lab, running_gatewayd(lab, OFFICE_POLICY) as daemon:
        flows = LongDownloads(lab, "finance", [(OTHER.ipv4, OTHER.hostname)], seconds=6)
        time.sleep(2)  # decided, and past its first packets
        before = rule_packets(daemon.nft("-j", "list", "counters", "table", "inet", "gatewayd"))
        time.sleep(3)
        after = rule_packets(daemon.nft("-j", "list", "counters", "table", "inet", "gatewayd"))
        results = flows.results()
    assert sum(before.values()) > 0, "the flow's first decided packet ran the rules"
    assert after == before, f"rules ran for a decided flow: {before} -> {after}"
    (flow,) = results
    assert flow.outcome == "completed" and flow.bytes > 1_000_000, flow  # ~3 s of it crossed meanwhile


def next_boundary(now: dt.datetime) -> dt.datetime:
    """The first whole minute at least BOUNDARY_LEAD_SECONDS away."""
    minute = (now + dt.timedelta(seconds=BOUNDARY_LEAD_SECONDS)).replace(second=0, microsecond=0)
    return minute + dt.timedelta(minutes=1)


def test_a_schedule_that_starts_cuts_an_open_flow_within_a_second(tmp_path: Path) -> None:
    boundary = next_boundary(dt.datetime.now())
    window = f"{boundary:%H:%M}-{boundary + dt.timedelta(hours=1):%H:%M}"
    policy = tmp_path / "office.yaml"
    policy.write_text(office_policy_with_work_hours("daily", window))  # games allowed until the boundary
    with Lab(hosts=OFFICE_HOSTS) as lab, running_gatewayd(lab, policy) as daemon:
        flows_last = (boundary - dt.datetime.now()).total_seconds() + 5
        flows = LongDownloads(lab, "sales", [(GAME.ipv4, GAME.hostname), (OTHER.ipv4, OTHER.hostname)],
                              seconds=flows_last)
        results = flows.results()
        log = daemon.log_text()
    game, other = sorted(results, key=lambda r: r.host != GAME.hostname)
    at_boundary = boundary.timestamp()
    assert game.bytes > 1_000_000, f"the game flow was not open before the boundary: {game}"
    assert game.outcome in ("reset", "stalled"), game
    assert game.last_byte > at_boundary - 1.0, f"cut {at_boundary - game.last_byte:.2f}s before the boundary"
    assert game.last_byte - at_boundary < 1.0, f"still received {game.last_byte - at_boundary:.2f}s after"
    assert other.outcome == "completed" and other.last_byte > at_boundary + 3, other
    assert "event=schedule_epoch" in log


VIDEO = DEFAULT_SITES["bilibili"]  # video: allowed (bulk) for finance in office.yaml
NO_VIDEO_FOR_FINANCE = ("rules:\n  - name: no-video-for-finance\n    groups: [finance]\n    categories: [video]\n"
                        "    action: block\n")


def test_a_restart_with_a_stricter_policy_reaches_flows_the_last_run_decided(tmp_path: Path) -> None:
    """The new run's first epoch has the same label bit as the last run's: flows tagged then must not
    skip the new rules (every epoch bit is cleared at the first apply)."""
    policy = tmp_path / "office.yaml"
    policy.write_text(OFFICE_POLICY.read_text())
    with Lab(hosts=OFFICE_HOSTS) as lab:
        with running_gatewayd(lab, policy):
            # Opened under the daemon: gatewayd tracks TCP strictly, so no flow is picked up mid-stream.
            flows = LongDownloads(lab, "finance", [(VIDEO.ipv4, VIDEO.hostname), (OTHER.ipv4, OTHER.hostname)],
                                  seconds=20)  # the next start takes a few seconds on a busy machine
            time.sleep(2)  # decided and tagged with the first epoch's bit
        policy.write_text(OFFICE_POLICY.read_text().replace("\nrules:\n", "\n" + NO_VIDEO_FOR_FINANCE, 1))
        with running_gatewayd(lab, policy) as daemon:
            started_at = time.time()
            results = flows.results()
            log = daemon.log_text()
    video, other = sorted(results, key=lambda r: r.host != VIDEO.hostname)
    assert video.outcome in ("reset", "stalled"), video
    assert video.last_byte - started_at < 1.0, f"still received {video.last_byte - started_at:.2f}s after the start"
    assert other.outcome == "completed", other
    assert "event=epoch_labels_cleared epoch=0 flows=2" in log, log  # both flows had the first epoch's bit


# --- a label bit reused after a full cycle of epochs (apply/epoch_labels.py) ---

LABELLING_TABLE = "table inet label_test { chain out { type filter hook output priority 0; ct label set 70; " \
    "ct label set 5; }; }"
LABELLED_FLOWS = """\
ip link set lo up
nft '%s'
exec %s -c '%s'
"""

CLEAR_AND_READ = """\
import json, socket
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTSocket
from gatewayd.apply.epoch_labels import clear_label_bits
for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"x", (address, 9))
cleared = clear_label_bits(1 << 70)
labels = []
for family in (socket.AF_INET, socket.AF_INET6):
    ct = NFCTSocket(nfgen_family=family)
    labels += [int(entry.get_attr("CTA_LABELS") or 0) for entry in ct.dump()]
    ct.close()
print(json.dumps({"cleared": cleared, "labels": labels}))
"""


def test_clearing_epoch_label_bits_leaves_every_other_label_bit_alone() -> None:
    """In a namespace of its own (`unshare -n`): gone with the process, nothing to clean up."""
    script = LABELLED_FLOWS % (LABELLING_TABLE, sys.executable, CLEAR_AND_READ)
    done = subprocess.run(["unshare", "-n", "sh", "-e", "-c", script], capture_output=True, text=True,
                          timeout=30, check=True, cwd=REPO)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["cleared"] == 2  # one IPv4 and one IPv6 flow carried bit 70
    assert result["labels"] == [1 << 5, 1 << 5]  # bit 70 gone, the other tool's bit 5 kept
