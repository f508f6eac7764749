"""Where our catalog names a server differently from nDPI, and what nDPI knows for our apps that we lack.

The accuracy figures of issue 13 are nDPI's labels on traffic we never saw, so a host name
that our catalog gives to one app and nDPI to another is a "wrong app" waiting to happen.
This reads nDPI's host-name table (bench/data/ndpi_host_match.tsv: pattern -> protocol, with
its source and version in its header) and the built-in catalog, and prints:

  * DISAGREE: names both know, where nDPI's app and ours differ and neither is the other's
    parent or child in our hierarchy (googlemaps under google agrees with google);
  * OTHER LEVEL: names where one side says the parent and the other a sub-app;
  * MISSING: names nDPI gives to an app we have, which our catalog does not name at all;
  * KEPT: disagreements our catalog keeps on purpose (DELIBERATE below, each with its reason).

Names are taken from both sides: every domain of our catalog, and every nDPI pattern that is
a whole name. nDPI's ids are its protocol names lowercased, as the labels bench/accuracy.py reads.

    python3 bench/catalog_vs_ndpi.py [--table bench/data/ndpi_host_match.tsv] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.classify.domains import DomainMatcher
from gatewayd.policy.app_tree import ancestors
from gatewayd.policy.applications import load_catalog
from gatewayd.policy.errors import PolicyIssue
from gatewayd.policy.model import Application

TABLE = Path(__file__).resolve().parent / "data" / "ndpi_host_match.tsv"

# nDPI names with no app of ours behind them here: generic services whose names overlap ours.
NOT_AN_APP = frozenset({"ocsp"})

# Names where our catalog says something else than nDPI on purpose: (name, our app) -> why.
WECHAT_OWN = "WeChat's own host: a rule that blocks QQ must not break WeChat, which offices use for work"
TENCENT_GAMES = "Tencent's games, not QQ's chat: a rule on QQ must not reach them"
MS_SHARED = "a host every Microsoft product uses (sign-in, telemetry, links, help), not the Office suite alone"
NDPI_411 = "nDPI 4.11's own labels on ../shared/pcaps name it so; only later generated lists differ"
DELIBERATE: dict[tuple[str, str], str] = {
    ("work.weixin.qq.com", "wecom"): "WeCom is the office's work tool, WeChat and QQ private chat",
    ("qyapi.weixin.qq.com", "wecom"): "WeCom's API host: the office's work tool",
    ("weixin.qq.com", "wechat"): WECHAT_OWN,
    ("wx.qq.com", "wechat"): WECHAT_OWN,
    ("meeting.qq.com", "tencentmeeting"): "Tencent Meeting is the office's conferencing app (nDPI has no id for it)",
    ("game.qq.com", "tencentgames"): TENCENT_GAMES,
    ("lol.qq.com", "tencentgames"): TENCENT_GAMES,
    ("pvp.qq.com", "tencentgames"): TENCENT_GAMES,
    ("gamesafe.qq.com", "tencentgames"): TENCENT_GAMES,
    ("gcloud.qq.com", "tencentgames"): TENCENT_GAMES,
    ("video.qq.com", "tencentvideo"): "Tencent Video's own site and playback API beside v.qq.com",
    ("vqq.qq.com", "tencentvideo"): "Tencent Video's own host",
    ("meet.googleapis.com", "googlemeet"): "Meet's own API: a rule on Meet must stop it",
    ("dynamite-pa.googleapis.com", "googlechat"): "Google Chat's own API: a rule on Chat must stop it",
    ("youtubei-upload.googleapis.com", "youtubeupload"): "YouTube's upload API: a rule on uploads must stop it",
    ("drive.usercontent.google.com", "googledrive"): "Drive's download host",
    ("backup.googleapis.com", "googleservices"): "a Google API; the catalog has no Google Cloud app to name",
    ("datasaver.googleapis.com", "googleservices"): "a Google API; the catalog has no Data Saver app to name",
    ("play.googleapis.com", "googleservices"): NDPI_411,
    ("skype.com", "skype_teams"): "Skype stays Skype; Teams has its own names",
    ("bing.com", "microsoft"): NDPI_411,
    ("www.bing.com", "microsoft"): NDPI_411,
    ("aria.microsoft.com", "microsoft"): NDPI_411,
    ("events.data.microsoft.com", "microsoft"): MS_SHARED,
    ("go.microsoft.com", "microsoft"): MS_SHARED,
    ("support.microsoft.com", "microsoft"): MS_SHARED,
    ("account.live.com", "microsoft"): MS_SHARED,
    ("login.live.com", "microsoft"): MS_SHARED,
    ("signup.live.com", "microsoft"): MS_SHARED,
    ("compass-ssl.microsoft.com", "microsoft"): MS_SHARED,
    ("outlook.office.com", "microsoft365"): NDPI_411,
    ("www.outlook.com", "outlook"): NDPI_411,
    ("teams.office.com", "teams"): NDPI_411,
    ("teams.cdn.office.net", "teams"): "the Teams client's own CDN name",
    ("users.storage.live.com", "ms_onedrive"): "OneDrive's storage",
    ("do.dsp.mp.microsoft.com", "windowsupdate"): "Microsoft's published Delivery Optimization endpoint",
    ("windowsupdate.microsoft.com", "windowsupdate"): "Microsoft's published Windows Update endpoint",
    ("doh.familyshield.opendns.com", "doh_dot"): "OpenDNS's DNS-over-HTTPS resolver, not its web site",
}


@dataclass(frozen=True)
class NdpiPattern:
    pattern: str
    app: str  # nDPI's protocol name, lowercased: the id the labels use


def read_table(path: Path) -> list[NdpiPattern]:
    patterns = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pattern, protocol = line.split("\t")
        patterns.append(NdpiPattern(pattern.strip().lower(), protocol.strip().lower()))
    return patterns


def ndpi_suffix_match(pattern: str, name: str) -> bool:
    """A pattern that ends where the name ends: "qq.com" for "res.wx.qq.com", "goog" for "b1.nel.goog"."""
    if pattern.endswith(".") or pattern.endswith("-"):
        return False
    if pattern.startswith("-"):
        return name.endswith(pattern)
    return name == pattern or name.endswith(f".{pattern}")


def ndpi_inner_match(pattern: str, name: str) -> bool:
    """A pattern found inside the name at a label's start ("google." in "www.google.it") or, for one
    starting with "-", inside a label ("-mtalk.google.com" in "alt1-mtalk.google.com")."""
    if pattern.startswith("-"):
        return pattern in name
    if not (pattern.endswith(".") or pattern.endswith("-")):
        return False  # a whole name: only where the name ends (ndpi_suffix_match)
    return name.startswith(pattern) or f".{pattern}" in name


def ndpi_app(patterns: Iterable[NdpiPattern], name: str) -> str | None:
    """nDPI's app for a name: the longest pattern that ends with the name wins; a pattern found
    only inside it counts when none does. That order is what nDPI's own labels show: it names
    "res.wx.qq.com" and "hkminorshort.weixin.qq.com" QQ ("qq.com") although "wx." and "weixin."
    are WeChat's patterns, and "www.google.it" Google ("google.")."""
    entries = list(patterns)
    for matches in (ndpi_suffix_match, ndpi_inner_match):
        found = [entry for entry in entries if matches(entry.pattern, name)]
        if found:
            return max(found, key=lambda entry: len(entry.pattern)).app
    return None


def sample_name(pattern: str) -> str | None:
    """A name the pattern stands for, to ask our catalog about; None for a pattern that only names
    part of a label or any top-level domain ("torrent.", "fbcdn-", "goog"): our catalog lists names."""
    if pattern.startswith("-") or pattern.endswith(".") or pattern.endswith("-") or "." not in pattern:
        return None
    return pattern


def catalog_names(catalog: Mapping[str, Application]) -> dict[str, str]:
    names = {}
    for app_id, app in catalog.items():
        for domain in app.domains:
            name = domain.lstrip("=")
            names[name[2:] if name.startswith("*.") else name] = app_id
    return names


@dataclass
class Comparison:
    disagree: list[tuple[str, str, str]]  # name, ours, nDPI's
    other_level: list[tuple[str, str, str]]
    missing: list[tuple[str, str]]  # name, nDPI's app (one of ours)
    kept: list[tuple[str, str, str, str]]  # name, ours, nDPI's, why


def compare(catalog: Mapping[str, Application], patterns: list[NdpiPattern]) -> Comparison:
    matcher = DomainMatcher((domain, app_id) for app_id, app in catalog.items() for domain in app.domains)
    names = set(catalog_names(catalog))
    names.update(name for name in (sample_name(entry.pattern) for entry in patterns) if name is not None)
    result = Comparison([], [], [], [])
    for name in sorted(names):
        theirs = ndpi_app(patterns, name)
        match = matcher.lookup(name)
        ours = match.app if match is not None else None
        if theirs is None or theirs in NOT_AN_APP or theirs == ours:
            continue
        if ours is None:
            if theirs in catalog:
                result.missing.append((name, theirs))
            continue
        if theirs in ancestors(ours, catalog) or ours in ancestors(theirs, catalog):
            result.other_level.append((name, ours, theirs))
        elif (name, ours) in DELIBERATE:
            result.kept.append((name, ours, theirs, DELIBERATE[(name, ours)]))
        else:
            result.disagree.append((name, ours, theirs))
    return result


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--quiet", action="store_true", help="the counts only")
    args = parser.parse_args(list(argv) if argv is not None else None)
    issues: list[PolicyIssue] = []
    catalog = load_catalog(None, issues)
    if issues:
        print("\n".join(map(str, issues)), file=sys.stderr)
        return 1
    patterns = read_table(args.table)
    result = compare(catalog, patterns)
    if not args.quiet:
        for title, rows in (("DISAGREE (name: ours / nDPI)", result.disagree),
                            ("OTHER LEVEL (name: ours / nDPI)", result.other_level),
                            ("MISSING (name: nDPI's app, which we have)", result.missing),
                            ("KEPT on purpose (name: ours / nDPI: why)", result.kept)):
            print(f"{title}: {len(rows)}")
            for row in rows:
                print("  " + f"{row[0]}: " + " / ".join(row[1:3]) + (f": {row[3]}" if len(row) > 3 else ""))
    print(f"summary: {len(patterns)} nDPI patterns; disagree {len(result.disagree)}, "
          f"other level {len(result.other_level)}, missing {len(result.missing)}, kept on purpose {len(result.kept)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
