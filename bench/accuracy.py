"""Accuracy of `gatewayd classify` against nDPI's labels, on both labelled capture sets.

For each set (../shared/pcaps: the one the classifier was built on;
../shared/pcaps-more: captures nobody tuned on) every capture goes through the
same code as `gatewayd classify --pcap` (offline.replay_capture, in worker
processes), flows are matched to labels.jsonl without regard to direction
(proto + the two endpoints), and this prints:

  * APP FLOWS: labelled TCP/UDP flows whose nDPI label is an application of
    our catalog (not a bare protocol such as tls, http, dns or stun), nDPI's
    port-only guesses left out. On them:
      - flow-weighted agreement: our app == nDPI's app, over all those flows;
      - per-app agreement: the same share computed per app, then averaged, so
        each app weighs the same however many flows its captures hold;
  * WRONG APP share: of the flows where nDPI names any specific app (in our
    catalog or not, port guesses left out), those where we name a different
    specific app. "unknown" and bare protocols (stun, dns, ...) are not a
    wrong name; naming the label's parent or child app in the catalog's
    hierarchy (google for googleservices) is counted apart as "other level";
  * internal errors per capture (must be 0), flows per method, unknown share;
  * a per-app table and the remaining disagreements.

    python3 bench/accuracy.py [--set pcaps --set pcaps-more] [--jobs 2] [--only NAME] [--show 40]

--only keeps the captures whose file name contains NAME (repeatable), for
quick runs while iterating. Labels are nDPI 4.11-dev's opinion, not truth.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.classify.capture import CaptureError
from gatewayd.classify.offline import FlowReport, replay_capture
from gatewayd.lab.captures import (
    DEVELOPMENT_SET,
    UNSEEN_SET,
    capture_set,
    missing_reason,
)
from gatewayd.policy.app_tree import ancestors
from gatewayd.policy.applications import load_catalog
from gatewayd.policy.model import Application

# nDPI labels (and our ids) that name a protocol, not an application: no app to agree or disagree with.
GENERIC_LABELS = frozenset({
    "unknown", "tls", "http", "quic", "dtls", "dns", "http_proxy", "ssdp", "mdns", "llmnr", "dhcp", "dhcpv6",
    "netbios", "icmp", "icmpv6", "igmp", "ntp", "rtp", "rtcp", "stun", "wsd", "nat-pmp", "bacnet",
    "smbv1", "smbv23", "kerberos", "ajp", "ftp_control", "ftp_data", "webdav", "mpegdash", "rtmp",
})
PORT_GUESS = "Match by port"

FlowKey = tuple[str, frozenset[tuple[str, int]]]


@dataclass(frozen=True)
class Label:
    pcap: str
    key: FlowKey
    app: str
    confidence: str
    hostname: str | None
    flow_no: int


@dataclass(frozen=True)
class CaptureOutcome:
    name: str
    reports: list[FlowReport]
    internal_errors: int
    error: str  # the capture could not be read at all


def flow_key(proto: str, a: str, a_port: int, b: str, b_port: int) -> FlowKey:
    # Addresses in one canonical spelling: nDPI writes a lone zero group of IPv6 as "::"
    # ("face:b00c::3"), Python keeps it ("face:b00c:0:3"); as text such flows never matched.
    return proto, frozenset({(canonical_address(a), a_port), (canonical_address(b), b_port)})


def canonical_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def load_labels(directory: Path) -> list[Label]:
    labels = []
    with (directory / "labels.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            if row["proto"] in ("tcp", "udp"):
                labels.append(Label(row["pcap"], flow_key(row["proto"], row["src"], row["sport"], row["dst"],
                                                          row["dport"]),
                                    row["app"], row["confidence"], row["hostname"], row["flow_no"]))
    return labels


def classify_one(path: Path) -> CaptureOutcome:
    apps = list(load_catalog(None, []).values())
    try:
        result = replay_capture(path, apps)
    except (OSError, CaptureError) as exc:  # a capture we cannot read is reported, not fatal to the whole run
        return CaptureOutcome(path.name, [], 0, f"{type(exc).__name__}: {exc}")
    return CaptureOutcome(path.name, result.reports, result.stats.internal_errors, "")


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}% ({part}/{whole})" if whole else "  n/a"


def measure(set_name: str, only: list[str], jobs: int, show: int, catalog: dict[str, Application]) -> dict[str, float]:
    directory = capture_set(set_name)
    reason = missing_reason(directory)
    if reason is not None:
        print(f"== {set_name}: {reason}")
        return {}
    captures = sorted(p for p in directory.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap")
                      and (not only or any(word in p.name for word in only)))
    names = {p.name for p in captures}
    labels = [label for label in load_labels(directory) if label.pcap in names]
    started = time.perf_counter()
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        outcomes = list(pool.map(classify_one, captures, chunksize=4))
    wall = time.perf_counter() - started

    ours: dict[tuple[str, FlowKey], FlowReport] = {}
    for outcome in outcomes:
        for report in outcome.reports:
            ours.setdefault((outcome.name, flow_key(report.proto, report.src, report.sport, report.dst, report.dport)),
                            report)

    def app_of(label: Label) -> str:
        report = ours.get((label.pcap, label.key))
        return report.app if report is not None else "(no flow)"

    def related(a: str, b: str) -> bool:  # one is the other's ancestor: the right app at another level
        return b in ancestors(a, catalog) or a in ancestors(b, catalog)

    confident = [label for label in labels if label.confidence != PORT_GUESS]
    app_flows = [label for label in confident if label.app in catalog and label.app not in GENERIC_LABELS]
    specific = [label for label in confident if label.app not in GENERIC_LABELS]
    wrong: list[Label] = []
    other_level: list[Label] = []
    for label in specific:
        said = app_of(label)
        if said == label.app or said in GENERIC_LABELS or said == "(no flow)":
            continue
        (other_level if related(label.app, said) else wrong).append(label)
    agree = [label for label in app_flows if app_of(label) == label.app]
    by_app: dict[str, list[Label]] = collections.defaultdict(list)
    for label in app_flows:
        by_app[label.app].append(label)
    per_app = [sum(1 for label in rows if app_of(label) == label.app) / len(rows) for rows in by_app.values()]
    per_app_agreement = sum(per_app) / len(per_app) if per_app else 0.0
    errors = [o for o in outcomes if o.internal_errors or o.error]
    reports = [report for outcome in outcomes for report in outcome.reports]
    unknown = sum(1 for report in reports if report.app == "unknown")

    print(f"== {set_name}: {len(captures)} captures, {len(labels)} labelled TCP/UDP flows, "
          f"{sum(1 for label in labels if (label.pcap, label.key) not in ours)} not matched to a flow of ours, "
          f"{wall:.1f} s")
    print(f"APP FLOWS (nDPI label is a catalog app, port guesses left out): {len(app_flows)} in {len(by_app)} apps")
    print(f"  agreement, flow-weighted:  {percent(len(agree), len(app_flows))}")
    print(f"  agreement, per app:        {100.0 * per_app_agreement:5.1f}%")
    print(f"WRONG APP share (of {len(specific)} flows nDPI names a specific app): {percent(len(wrong), len(specific))}")
    print(f"  parent/child of the label instead (other level): {len(other_level)}")
    print(f"internal errors: {sum(o.internal_errors for o in outcomes)}"
          + "".join(f"\n  {o.name}: {o.error or f'{o.internal_errors} internal errors'}" for o in errors))
    methods = collections.Counter(report.method for report in reports)
    print(f"our flows: {len(reports)}, unknown {percent(unknown, len(reports))}; by method: "
          + ", ".join(f"{method} {count}" for method, count in methods.most_common()))

    print("per app: flows, agree, share, what we said otherwise")
    for app, rows in sorted(by_app.items(), key=lambda item: (-len(item[1]), item[0])):
        good = sum(1 for label in rows if app_of(label) == app)
        others = collections.Counter(app_of(label) for label in rows if app_of(label) != app)
        other_text = ", ".join(f"{name} {count}" for name, count in others.most_common(4))
        print(f"  {app:20s} {len(rows):4d} {good:4d} {100.0 * good / len(rows):6.1f}%  {other_text}")

    print(f"wrong apps ({len(wrong)}), then disagreements on app flows:")
    listed: set[int] = set()
    for label in wrong + [label for label in app_flows if app_of(label) != label.app]:
        if id(label) in listed or len(listed) >= show:
            continue
        listed.add(id(label))
        found = ours.get((label.pcap, label.key))
        endpoints = " ".join(f"{ip}:{port}" for ip, port in sorted(label.key[1]))
        said = f"{found.app}/{found.method}/{found.evidence}" if found else "(no flow)"
        print(f"  {label.pcap}#{label.flow_no} {label.key[0]} {endpoints} nDPI={label.app}"
              f"({label.confidence}, {label.hostname}) ours={said}")
    print()
    return {"flow_weighted": len(agree) / len(app_flows) if app_flows else 0.0, "per_app": per_app_agreement,
            "wrong": len(wrong) / len(specific) if specific else 0.0}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="sets", action="append", help="capture set under ../shared (repeatable)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], help="only captures whose name contains this")
    parser.add_argument("--show", type=int, default=40, help="disagreements to list per set")
    args = parser.parse_args(list(argv) if argv is not None else None)
    issues: list[object] = []
    catalog = load_catalog(None, issues)
    if issues:
        print("\n".join(map(str, issues)), file=sys.stderr)
        return 1
    figures = {name: measure(name, args.only, args.jobs, args.show, catalog)
               for name in (args.sets or [DEVELOPMENT_SET, UNSEEN_SET])}
    print("summary: " + "; ".join(
        f"{name} flow-weighted {f['flow_weighted']:.3f} per-app {f['per_app']:.3f} wrong {100 * f['wrong']:.2f}%"
        for name, f in figures.items() if f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
