"""`gatewayd classify --pcap`: the capture reader and the command's output and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from gatewayd.classify.capture import CaptureError, read_frames, read_ip_packets
from gatewayd.lab.captures import DEVELOPMENT_SET, capture_set

PCAPS = capture_set(DEVELOPMENT_SET)
ROOT = Path(__file__).resolve().parents[2]
needs_pcaps = pytest.mark.captures(DEVELOPMENT_SET)
FIELDS = {"proto", "src", "sport", "dst", "dport", "app", "category", "method", "evidence"}


def run_classify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatewayd", "classify", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


@needs_pcaps
@pytest.mark.parametrize("name", ["dingtalk.pcap", "steam.pcapng", "rdp.pcap", "anydesk.pcapng", "tencent_games.pcap"])
def test_reader_sees_what_dpkt_sees(name: str) -> None:
    with (PCAPS / name).open("rb") as handle:
        try:
            reader = dpkt.pcap.Reader(handle)
        except ValueError:
            handle.seek(0)
            reader = dpkt.pcapng.Reader(handle)
        theirs = [bytes(frame) for _, frame in reader]
    ours = [frame for _, _, frame in read_frames(PCAPS / name)]
    assert ours == theirs


@needs_pcaps
def test_command_prints_one_json_object_per_flow() -> None:
    done = run_classify("--pcap", str(PCAPS / "dingtalk.pcap"))
    assert done.returncode == 0, done.stderr
    flows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(flows) == 2 and all(set(flow) >= FIELDS for flow in flows)
    by_server = {flow["dst"]: flow for flow in flows}
    assert by_server["104.166.182.25"]["app"] == "dingtalk"
    assert by_server["104.166.182.25"]["method"] == "tls-sni"
    assert by_server["104.166.182.25"]["evidence"] == "static.dingtalk.com"
    assert by_server["47.246.133.39"] == {**by_server["47.246.133.39"], "app": "dingtalk", "method": "address",
                                          "category": "office"}


@needs_pcaps
def test_command_with_a_policy_uses_its_apps(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\ninterfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}\n"
                      "classes: {default: {priority: 3}}\napplications:\n  dingtalk:\n    name: Mine\n"
                      "    category: erp-crm-oa\n    domains: [static.dingtalk.com]\n")
    done = run_classify("--pcap", str(PCAPS / "dingtalk.pcap"), "--policy", str(policy))
    assert done.returncode == 0, done.stderr
    categories = {json.loads(line)["dst"]: json.loads(line)["category"] for line in done.stdout.splitlines()}
    assert categories["104.166.182.25"] == "erp-crm-oa"


def test_bad_inputs_give_one_clear_line(tmp_path: Path) -> None:
    missing = run_classify("--pcap", str(tmp_path / "nope.pcap"))
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all")
    bad = run_classify("--pcap", str(garbage))
    for done in (missing, bad):
        assert done.returncode == 1 and done.stdout == ""
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "cannot read the capture" in missing.stderr
    assert "not a readable pcap/pcapng capture" in bad.stderr
    with pytest.raises(CaptureError):
        list(read_ip_packets(garbage))


def test_truncated_capture_ends_cleanly(tmp_path: Path) -> None:
    header = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
    packet = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c000100004011000a0a0000010a00000204d2003500080000")
    record = (1).to_bytes(4, "little") + bytes(4) + len(packet).to_bytes(4, "little") * 2 + packet
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(header + record + record[:20])
    assert [len(p) for _, p in read_ip_packets(cut)] == [len(packet) - 14]


def test_command_ends_with_a_summary_of_methods_and_the_unknown_share(tmp_path: Path) -> None:
    # Two flows built here: SSH (decided by its signature) and a UDP flow nothing names.
    from scapy.all import IP, TCP, UDP, Raw, wrpcap

    packets = [IP(src="192.0.2.10", dst="203.0.113.5") / TCP(sport=40000, dport=2222, flags="PA", seq=1)
               / Raw(b"SSH-2.0-OpenSSH_9.2\r\n"),
               IP(src="192.0.2.10", dst="203.0.113.6") / UDP(sport=40001, dport=40999) / Raw(bytes(30))]
    capture = tmp_path / "two.pcap"
    wrpcap(str(capture), packets, linktype=228)  # LINKTYPE_IPV4: bare IP packets
    done = run_classify("--pcap", str(capture))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2  # stdout stays one JSON object per flow
    summary = [line for line in done.stderr.splitlines() if line.startswith("summary: ")]
    assert summary == ["summary: flows: 2, unknown: 1 (50.0%)",
                       "summary: by method: signature 1, give-up 1",
                       "summary: packets: 2, malformed: 0, fragments: 0, internal errors: 0"]
    quiet = run_classify("--pcap", str(capture), "--no-summary")
    assert quiet.stderr == ""
