"""A learned address gets the app of its latest answer whatever the writer's book remembers (issue 14).

The writer's book of what it wrote is a bounded cache (apply/learned_writer.py), so
each write must replace whatever the kernel's learned maps hold for an address:
NFT_MSG_DESTROYSETELEM + NFT_MSG_NEWSETELEM in one transaction (apply/learned_netlink.py).

* On the kernel alone, in a namespace of its own (`unshare -n`): maps declared as
  compile/ruleset.py declares the learned maps; an element there with another chain
  and an absent one both end up as written, in both families; a batch the kernel
  refuses changes nothing.
* Through the real daemon: the book of a new daemon knows nothing, while the kernel
  kept what the killed one had learned (fail open). A named resolver then says the
  address is another app's: the kernel map must show the new app. (With nft's plain
  add the kernel refused the whole batch: File exists.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewayd.compile.plan import compile_plan
from gatewayd.compile.ruleset import LEARNED_MAP_SIZE
from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.kernel_view import learned_app
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import INTERNET, Lab
from gatewayd.policy.loader import load_policy

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]

MAPS = f"""\
table inet gatewayd {{
  chain set_app_1 {{ }}
  chain set_app_2 {{ }}
  map learned_v4 {{ type ipv4_addr : verdict; flags timeout; size {LEARNED_MAP_SIZE}; }}
  map learned_v6 {{ type ipv6_addr : verdict; flags timeout; size {LEARNED_MAP_SIZE}; }}
}}
add element inet gatewayd learned_v4 {{ 192.0.2.1 timeout 300s : goto set_app_1 }}
add element inet gatewayd learned_v6 {{ 2001:db8::1 timeout 300s : goto set_app_1 }}
"""

WRITE = """\
import json, sys
sys.path.insert(0, sys.argv[1])
from gatewayd.apply.learned_netlink import LearnedMapSocket
from gatewayd.apply.set_elements_netlink import ElementBatchError
maps = LearnedMapSocket("inet", "gatewayd")
maps.replace([("learned_v4", [("192.0.2.1", "set_app_2", 120), ("192.0.2.9", "set_app_2", 60)]),
              ("learned_v6", [("2001:db8::1", "set_app_2", 120), ("2001:db8::9", "set_app_1", 60)])])
try:
    maps.replace([("learned_v4", [("192.0.2.1", "set_app_1", 30), ("192.0.2.10", "no_such_chain", 30)])])
    refused = None
except ElementBatchError as exc:
    refused = exc.code
print(json.dumps({"refused": refused}))
"""


def elements(listing: dict[str, list[dict[str, object]]]) -> dict[str, tuple[str, int]]:
    """address -> (chain, timeout) of a map listed as JSON."""
    found = {}
    for item in listing["nftables"]:
        for key, verdict in item.get("map", {}).get("elem", []):  # type: ignore[attr-defined]
            found[str(key["elem"]["val"])] = (verdict["goto"]["target"], key["elem"]["timeout"])
    return found


def test_one_transaction_replaces_present_and_absent_elements_and_a_refused_one_changes_nothing() -> None:
    script = (f"nft -f - <<'EOF'\n{MAPS}EOF\n"
              f"{sys.executable} -c '{WRITE}' {REPOSITORY}\n"
              "nft -j list map inet gatewayd learned_v4\nnft -j list map inet gatewayd learned_v6\n")
    done = subprocess.run(["unshare", "-n", "sh", "-e", "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)
    written, v4, v6 = (json.loads(line) for line in done.stdout.strip().splitlines()[-3:])
    assert written["refused"] == 2  # ENOENT: no such chain; and the whole batch with it
    assert elements(v4) == {"192.0.2.1": ("set_app_2", 120), "192.0.2.9": ("set_app_2", 60)}
    assert elements(v6) == {"2001:db8::1": ("set_app_2", 120), "2001:db8::9": ("set_app_1", 60)}


# A resolver the test's policy names, answering A and AAAA for the names it is given (right id and
# question: a real server). Bounded: it stops by itself after two minutes.
RESOLVER = r"""
import socket, sys, time
from scapy.all import DNS, DNSRR
answers = dict(arg.split("=", 1) for arg in sys.argv[2:])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 53))
sock.settimeout(0.5)
print("ready", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        data, peer = sock.recvfrom(4096)
    except socket.timeout:
        continue
    query = DNS(data)
    name, qtype = query.qd.qname.decode().rstrip("."), query.qd.qtype
    v4, v6 = answers[name].split(",") if name in answers else (None, None)
    record = (DNSRR(rrname=name, type="A", ttl=600, rdata=v4) if qtype == 1 and v4 else
              DNSRR(rrname=name, type="AAAA", ttl=600, rdata=v6) if qtype == 28 and v6 else None)
    sock.sendto(bytes(DNS(id=query.id, qr=1, aa=1, rd=query.rd, ra=1, qd=query.qd, an=record)), peer)
"""
RESOLVER_ADDRESS = "203.0.113.67"
SERVER_V4, SERVER_V6 = "203.0.113.177", "2001:db8:100::177"  # no site's, not in the catalog
FIRST, LATER = DEFAULT_SITES["crm"].hostname, DEFAULT_SITES["wechat"].hostname


def wait_until_ready(log: Path, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and "ready" in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"the resolver did not start: {log.read_text() if log.exists() else 'no log'}")


def test_an_address_the_new_daemons_book_never_saw_gets_the_app_of_a_later_answer(tmp_path: Path) -> None:
    policy = tmp_path / "office.yaml"
    text = OFFICE_POLICY.read_text()
    named = '  resolvers: [203.0.113.53, "2001:db8:100::53"]\n'
    assert named in text
    policy.write_text(text.replace(named, f'  resolvers: [203.0.113.53, "2001:db8:100::53", {RESOLVER_ADDRESS}]\n'))
    plan = compile_plan(load_policy(str(policy)))
    served = {FIRST: f"{SERVER_V4},{SERVER_V6}", LATER: f"{SERVER_V4},{SERVER_V6}"}
    with Lab(hosts=OFFICE_HOSTS) as lab:
        lab.run(INTERNET, ["ip", "addr", "add", f"{RESOLVER_ADDRESS}/32", "dev", "lo"])
        resolver = lab.popen(INTERNET, [sys.executable, "-c", RESOLVER, RESOLVER_ADDRESS,
                                        *(f"{name}={addresses}" for name, addresses in served.items())],
                             log_name="named_resolver.log")
        try:
            wait_until_ready(lab.workdir / "named_resolver.log")
            first = GatewayDaemon(lab, policy).start()
            try:
                for rrtype in ("A", "AAAA"):
                    assert traffic.dns_query(lab, "finance", FIRST, rrtype, server=RESOLVER_ADDRESS).addresses
                first.wait_for_learned_writes()
                assert learned_app(lab, plan, SERVER_V4) == "crm" and learned_app(lab, plan, SERVER_V6) == "crm"
            finally:
                first.kill()  # no teardown: the kernel keeps its maps (fail open)
            daemon = GatewayDaemon(lab, policy).start()
            try:
                # Carried into the new daemon's table, unknown to its book.
                assert learned_app(lab, plan, SERVER_V4) == "crm"
                for rrtype in ("A", "AAAA"):
                    assert traffic.dns_query(lab, "finance", LATER, rrtype, server=RESOLVER_ADDRESS).addresses
                daemon.wait_for_learned_writes()
                assert learned_app(lab, plan, SERVER_V4) == "wechat"
                assert learned_app(lab, plan, SERVER_V6) == "wechat"
                exposition = daemon.metrics()
                assert metric_value(exposition, "gatewayd_dns_learned_write_failures_total") == 0
                assert "event=learn_failed" not in daemon.log_text()
            finally:
                daemon.stop()
        finally:
            resolver.kill()
