"""Accuracy of `gatewayd classify` against nDPI's labels on its own test captures.

Runs the real command (`python -m gatewayd classify --pcap FILE`) over every
capture in /work/shared/pcaps, matches our flows to labels.jsonl without
regard to direction (proto + the two endpoints), compares `app`, and prints:

  * agreement on TCP/UDP flows whose nDPI label is an app in our catalog
    (the headline: target >= 95%), with and without nDPI's port-only guesses;
  * the disagreement share: flows where nDPI names a specific app and we name
    a different specific app (target <= 1%); saying "unknown" is not counted
    as naming a different app;
  * a per-app table and the list of remaining disagreements.

gnutella.pcap: nDPI 4.11 leaves most of its flows undetected, nDPI 5.0 calls
303 of them Gnutella (see the captures' README); those "unknown" labels count
as "gnutella" here, and the figure without that adjustment is printed too.

    python3 bench/accuracy.py [--pcaps DIR] [--jobs 2] [--show 60]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gatewayd.policy.applications import load_catalog  # noqa: E402

# nDPI labels that name a protocol, not an application: no app to agree or disagree with.
GENERIC_LABELS = frozenset({
    "unknown", "tls", "http", "quic", "dtls", "dns", "http_proxy", "ssdp", "mdns", "llmnr", "dhcp", "dhcpv6",
    "netbios", "icmp", "icmpv6", "igmp", "ntp", "rtp", "rtcp", "stun", "wsd", "nat-pmp", "bacnet",
    "smbv1", "smbv23", "kerberos", "ajp", "ftp_control", "ftp_data", "webdav", "mpegdash", "rtmp",
})


@dataclass
class Row:
    pcap: str
    key: tuple[str, frozenset[tuple[str, int]]]
    label: str  # nDPI's app, after the gnutella adjustment
    raw_label: str
    confidence: str
    hostname: str | None
    flow_no: int
    section: str


def flow_key(proto: str, a: str, a_port: int, b: str, b_port: int) -> tuple[str, frozenset[tuple[str, int]]]:
    return proto, frozenset({(a, a_port), (b, b_port)})


def load_labels(pcaps: Path) -> list[Row]:
    rows = []
    with (pcaps / "labels.jsonl").open() as handle:
        for line in handle:
            r = json.loads(line)
            if r["proto"] not in ("tcp", "udp"):
                continue
            label = r["app"]
            if r["pcap"] == "gnutella.pcap" and label == "unknown":
                label = "gnutella"
            rows.append(Row(r["pcap"], flow_key(r["proto"], r["src"], r["sport"], r["dst"], r["dport"]),
                            label, r["app"], r["confidence"], r["hostname"], r["flow_no"], r["section"]))
    return rows


def classify(path: Path) -> tuple[str, list[dict], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gatewayd", "classify", "--pcap", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        print(f"{path.name}: gatewayd classify failed: {done.stderr.strip()[:300]}", file=sys.stderr)
        return path.name, [], elapsed
    return path.name, [json.loads(line) for line in done.stdout.splitlines() if line.strip()], elapsed


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}% ({part}/{whole})" if whole else "  n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pcaps", default="/work/shared/pcaps", type=Path)
    parser.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--show", type=int, default=80, help="disagreements to list")
    args = parser.parse_args()

    issues: list = []
    catalog = load_catalog(None, issues)
    ours = set(catalog)
    rows = load_labels(args.pcaps)
    captures = sorted(p for p in args.pcaps.iterdir() if p.suffix in (".pcap", ".pcapng"))

    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(classify, captures))
    wall = time.perf_counter() - started
    decided: dict[tuple[str, tuple[str, frozenset[tuple[str, int]]]], dict] = {}
    for name, reports, _elapsed in results:
        for report in reports:
            key = flow_key(report["proto"], report["src"], report["sport"], report["dst"], report["dport"])
            decided.setdefault((name, key), report)

    def ours_of(row: Row) -> dict | None:
        return decided.get((row.pcap, row.key))

    unmatched = sum(1 for row in rows if ours_of(row) is None)
    in_catalog = [row for row in rows if row.label in ours]
    by_app_rows = [row for row in rows if row.raw_label in ours]
    confident = [row for row in in_catalog if row.confidence != "Match by port"]
    strict_all = [row for row in rows if row.raw_label in ours]
    strict = [row for row in strict_all if row.confidence != "Match by port"]

    def agree(subset: list[Row], adjusted: bool = True) -> int:
        return sum(1 for row in subset if (report := ours_of(row)) is not None
                   and report["app"] == (row.label if adjusted else row.raw_label))

    specific = [row for row in rows if row.label not in GENERIC_LABELS]
    # Our "unknown", "dns" and "stun" name no application either (protocols, not apps).
    different = [row for row in specific if (report := ours_of(row)) is not None
                 and report["app"] not in ("unknown", "dns", "stun") and report["app"] != row.label]

    print(f"captures: {len(captures)}, labelled TCP/UDP flows: {len(rows)}, not matched to a flow of ours: "
          f"{unmatched}; catalog apps: {len(ours)}; wall time {wall:.1f} s")
    print()
    print(f"AGREEMENT on flows whose nDPI label is a catalog app (labels as published, port guesses "
          f"left out): {percent(agree(strict, adjusted=False), len(strict))}")
    print(f"  same, nDPI's port-only guesses included:                         "
          f"{percent(agree(strict_all, adjusted=False), len(strict_all))}")
    print(f"  same, gnutella.pcap 'unknown' counted as gnutella (README caveat): {percent(agree(confident), len(confident))}"
          f"  (its SYN-only and empty flows cannot be named by anyone)")
    print(f"DISAGREEMENT share: nDPI names a specific app, we name another one: {percent(len(different), len(specific))}")

    print("\nper app (nDPI label in our catalog): flows, agree, what we said otherwise")
    by_app: dict[str, list[Row]] = collections.defaultdict(list)
    for row in by_app_rows:
        by_app[row.label].append(row)
    for app, app_rows in sorted(by_app.items(), key=lambda item: (-len(item[1]), item[0])):
        good = agree(app_rows)
        others = collections.Counter(
            (ours_of(row) or {"app": "(no flow)"})["app"] for row in app_rows
            if (ours_of(row) or {}).get("app") != row.label)
        other_text = ", ".join(f"{name} {count}" for name, count in others.most_common(4))
        print(f"  {app:20s} {len(app_rows):4d} {good:4d}  {100.0 * good / len(app_rows):5.1f}%  {other_text}")

    print("\nper method (all matched flows):")
    methods = collections.Counter(report["method"] for report in decided.values())
    print("  " + ", ".join(f"{method} {count}" for method, count in methods.most_common()))

    wrong = [row for row in strict_all if (ours_of(row) or {}).get("app") != row.raw_label]
    print(f"\ndisagreements on catalog apps ({len(wrong)}), then other-app disagreements ({len(different)}):")
    seen = set()
    for row in (wrong + different)[:args.show]:
        if id(row) in seen:
            continue
        seen.add(id(row))
        report = ours_of(row) or {}
        endpoints = " ".join(f"{ip}:{port}" for ip, port in sorted(row.key[1]))
        print(f"  {row.pcap}#{row.flow_no} {row.key[0]} {endpoints} nDPI={row.raw_label}({row.confidence},"
              f" {row.hostname}) ours={report.get('app')}/{report.get('method')}/{report.get('evidence')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
