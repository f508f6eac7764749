"""The loader: the shipped policy and catalog load clean into the model, and nothing
an admin can put in a file makes it raise anything but PolicyError."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayd.policy import PolicyError, load_policy, load_policy_text
from gatewayd.policy.applications import default_catalog_path, load_catalog
from gatewayd.policy.model import AddressRange, Bandwidth, HourRange

REPO = Path(__file__).resolve().parents[2]
OFFICE = REPO / "policies" / "office.yaml"
CATALOG = REPO / "policies" / "catalog.yaml"

MINIMAL = """\
version: 1
interfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}
classes:
  default: {priority: 3}
"""


def issues_of(text: str, catalog_path: str | None = None) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml", catalog_path)
    return [str(issue) for issue in caught.value.issues]


# --- the shipped files ---------------------------------------------------------


def test_office_policy_loads_clean() -> None:
    policy = load_policy(str(OFFICE))
    assert policy.interfaces.lan == ("lan0",)
    assert policy.interfaces.wan == "wan0"
    assert (policy.interfaces.upload_bps, policy.interfaces.download_bps) == (20_000_000, 50_000_000)
    assert list(policy.classes) == ["realtime", "business", "default", "bulk"]
    assert policy.default_action == "allow" and policy.default_class == "default"
    assert {"sales", "service", "middle-platform", "finance", "hr", "guest", "managers"} <= set(policy.groups)


def test_office_policy_values_match_the_model() -> None:
    policy = load_policy(str(OFFICE))
    sales = policy.groups["sales"]
    assert sales.networks == (ipaddress.ip_network("192.0.2.0/27"), ipaddress.ip_network("2001:db8:1::1:0/112"))
    assert sales.location is not None and sales.location.file == str(OFFICE)
    work = policy.schedules["work-hours"]
    assert work.days == frozenset(range(5)) and work.hours == (HourRange(540, 1080),)
    bulk = policy.classes["bulk"]
    assert (bulk.priority, bulk.guaranteed, bulk.limit) == (7, Bandwidth(share=0.05), Bandwidth(share=0.3))
    erp = policy.applications["erp"]
    assert not erp.builtin and erp.ports[0].first == 8443 and erp.domains == ("erp.example.com",)
    assert policy.applications["dingtalk"].builtin
    rule_names = [rule.name for rule in policy.rules]
    assert rule_names[0] == "realtime-first" and policy.rules[0].qos_class == "realtime"
    assert all(rule.location is not None for rule in policy.rules)


def test_catalog_loads_clean_with_enough_apps() -> None:
    issues: list = []
    applications = load_catalog(CATALOG, issues)
    assert issues == []
    assert len(applications) >= 50
    for app_id in ("dingtalk", "wechat", "qq", "teams", "zoom", "bittorrent", "edonkey", "steam", "dns"):
        assert app_id in applications
    assert applications["bittorrent"].signatures == ("bittorrent",)
    assert applications["dns"].category == "dns"


def test_default_catalog_is_the_one_in_the_tree() -> None:
    assert default_catalog_path() == CATALOG


# --- details of the format ----------------------------------------------------


def test_minimal_policy_gets_defaults() -> None:
    policy = load_policy_text(MINIMAL, "p.yaml")
    assert policy.metrics_listen == "127.0.0.1:9108"
    assert policy.metrics.top_talkers == 20
    assert policy.classifier.fail_mode == "open" and policy.classifier.max_packets == 8
    assert policy.classes["default"].guaranteed == Bandwidth(bits_per_second=0)
    assert policy.classes["default"].limit == Bandwidth(share=1.0)
    assert policy.rules == ()


def test_members_of_every_kind() -> None:
    text = MINIMAL + ("groups:\n  g:\n    members: [192.0.2.0/27, 192.0.2.200-192.0.2.210, "
                      "02-00-5E-00-53-01, 192.0.2.99, 2001:db8::1]\n")
    group = load_policy_text(text, "p.yaml").groups["g"]
    assert group.ranges == (AddressRange(ipaddress.ip_address("192.0.2.200"), ipaddress.ip_address("192.0.2.210")),)
    assert group.macs == ("02:00:5e:00:53:01",)
    assert ipaddress.ip_network("192.0.2.99/32") in group.networks
    assert ipaddress.ip_network("2001:db8::1/128") in group.networks


def test_mac_that_yaml_would_read_as_a_number_stays_a_mac() -> None:
    text = MINIMAL + "groups:\n  g: {members: [10:20:30:40:50:59]}\n"
    assert load_policy_text(text, "p.yaml").groups["g"].macs == ("10:20:30:40:50:59",)


@pytest.mark.parametrize(
    ("days", "expected"),
    [("mon-fri", {0, 1, 2, 3, 4}), ("weekend", {5, 6}), ("daily", set(range(7))),
     ("[mon, wed]", {0, 2}), ("sat-mon", {5, 6, 0}), ("weekdays", {0, 1, 2, 3, 4})],
)
def test_schedule_days(days: str, expected: set[int]) -> None:
    text = MINIMAL + f"schedules:\n  s: {{days: {days}}}\n"
    schedule = load_policy_text(text, "p.yaml").schedules["s"]
    assert schedule.days == frozenset(expected) and schedule.hours == ()


def test_schedule_hours_may_end_at_midnight_and_cross_it() -> None:
    text = MINIMAL + 'schedules:\n  s: {days: daily, hours: ["18:00-24:00", "22:00-06:00"]}\n'
    assert load_policy_text(text, "p.yaml").schedules["s"].hours == (HourRange(1080, 1440), HourRange(1320, 360))


def test_absolute_rates_and_lan_list() -> None:
    text = """\
version: 1
interfaces: {lan: [lan0, lan1], wan: wan0, upload: 1.5mbit, download: 1gbit}
classes:
  default: {priority: 3, guaranteed: 500kbit, limit: 1mbit}
"""
    policy = load_policy_text(text, "p.yaml")
    assert policy.interfaces.lan == ("lan0", "lan1")
    assert (policy.interfaces.upload_bps, policy.interfaces.download_bps) == (1_500_000, 1_000_000_000)
    assert policy.classes["default"].guaranteed == Bandwidth(bits_per_second=500_000)


def test_class_alone_means_allow_and_action_allow_alone_means_default_class() -> None:
    text = MINIMAL + ("  bulk: {priority: 7}\nrules:\n  - {name: a, apps: [youtube], class: bulk}\n"
                      "  - {name: b, apps: [zoom], action: allow}\n")
    first, second = load_policy_text(text, "p.yaml").rules
    assert (first.action, first.qos_class) == ("allow", "bulk")
    assert (second.action, second.qos_class) == ("allow", None)


def test_policy_app_replaces_builtin_one() -> None:
    text = MINIMAL + "applications:\n  zoom: {name: Our Zoom, category: voice-video, domains: [zoom.example.com]}\n"
    zoom = load_policy_text(text, "p.yaml").applications["zoom"]
    assert zoom.name == "Our Zoom" and not zoom.builtin


def test_ipv6_metrics_listen_quoted() -> None:
    text = MINIMAL + 'metrics: {listen: "[::1]:9108"}\n'
    assert load_policy_text(text, "p.yaml").metrics_listen == "[::1]:9108"


def test_metrics_top_talkers_is_read_beside_listen() -> None:
    text = MINIMAL + 'metrics: {listen: "127.0.0.1:9200", top_talkers: 5}\n'
    metrics = load_policy_text(text, "p.yaml").metrics
    assert (metrics.listen, metrics.top_talkers) == ("127.0.0.1:9200", 5)


def test_dns_resolvers_are_addresses_of_both_families_in_file_order() -> None:
    text = MINIMAL + 'dns:\n  resolvers: [203.0.113.53, "2001:db8:100::53"]\n'
    dns = load_policy_text(text, "p.yaml").dns
    assert dns.resolvers == (ipaddress.ip_address("203.0.113.53"), ipaddress.ip_address("2001:db8:100::53"))
    assert str(dns.location) == "p.yaml:5:1"


@pytest.mark.parametrize("section", ["", "dns:\n", "dns: {resolvers: []}\n"])
def test_without_resolvers_the_office_resolves_through_the_router_only(section: str) -> None:
    assert load_policy_text(MINIMAL + section, "p.yaml").dns.resolvers == ()


def test_merge_keys_work_and_explicit_keys_win() -> None:
    text = """\
version: 1
interfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}
classes:
  default: &base {priority: 3, limit: 50%}
  bulk: {<<: *base, priority: 7}
"""
    bulk = load_policy_text(text, "p.yaml").classes["bulk"]
    assert (bulk.priority, bulk.limit) == (7, Bandwidth(share=0.5))


def test_all_errors_are_collected_in_one_pass() -> None:
    text = MINIMAL + ("groups:\n  a: {members: [192.0.2.1/24]}\n  b: {members: [nonsense]}\n"
                      "rules:\n  - {name: r, grups: [a]}\n")
    assert len(issues_of(text)) == 4  # two members, the unknown key, and no action or class


def test_unknown_top_level_key_is_suggested() -> None:
    from gatewayd.policy.loader import TOP_LEVEL_KEYS

    assert issues_of(MINIMAL + "grups: {}\n") == [
        f"p.yaml:5:1: unknown key 'grups' in the policy (expected one of: {', '.join(TOP_LEVEL_KEYS)}); "
        "did you mean 'groups'?"
    ]


def test_too_many_classes() -> None:
    classes = "".join(f"  c{number}: {{priority: 3}}\n" for number in range(31)) + "  default: {priority: 3}\n"
    text = "version: 1\ninterfaces: {lan: lan0, wan: wan0, upload: 10mbit, download: 10mbit}\nclasses:\n" + classes
    assert issues_of(text) == [
        "p.yaml:35:3: too many classes: 32 (at most 31; the connection mark has room for no more)"]


def test_too_many_groups() -> None:
    groups = "".join(f"  g{number}: {{members: [10.0.{number}.0/24]}}\n" for number in range(61))
    assert issues_of(MINIMAL + "groups:\n" + groups) == [
        "p.yaml:66:3: too many groups: 61 (at most 60; the connection mark has room for no more)"
    ]


def test_broken_catalog_is_reported_with_its_own_location(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("applications:\n  x:\n    name: X\n    category: nope\n    ports: [tcp/1]\n")
    issues = issues_of(MINIMAL, str(catalog))
    assert issues[0].startswith(f"{catalog}:4:15: category 'nope' is not known")


# --- files that are not policies ------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(str(missing))
    assert str(caught.value) == f"{missing}:1:1: cannot read policy: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}:1:1: cannot read policy: is a directory (expected a YAML file)"


def test_binary_junk(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"version: 1\n\x00\x01\x02\xff\xfe")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(junk))
    assert str(caught.value) == f"{junk}:2:4: file is not UTF-8 text (byte 0xff cannot be decoded)"


def test_control_characters(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"version: 1\nx: \x00\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(junk))
    assert str(caught.value) == f"{junk}:2:4: invalid YAML: unacceptable character U+0000"


def test_several_documents() -> None:
    assert issues_of(MINIMAL + "---\nversion: 1\n") == [
        "p.yaml:5:1: invalid YAML: expected a single document in the stream, but found another document"
    ]


def test_self_referencing_alias_is_refused_at_the_alias() -> None:
    # A recursive node has no end for any reader that walks it: refused while composing.
    assert issues_of(MINIMAL + "groups:\n  a: {members: &m [*m]}\n") == [
        "p.yaml:6:20: alias '*m' is inside the node it refers to (a recursive structure has no end)"
    ]


# --- nothing escapes but PolicyError ---------------------------------------------

YAML_PIECES = st.sampled_from([
    "version", "interfaces", "lan", "wan", "upload", "download", "classes", "groups", "rules", "default",
    "schedules", "applications", "members", "name", "action", "class", "priority", "guaranteed", "limit",
    "days", "hours", "apps", "categories", "1", "0", "-1", "99999999999999999999", "10mbit", "20%", "0%",
    "192.0.2.0/24", "192.0.2.1-192.0.2.0", "::1", "[::1]:9108", "tcp/80", "mon-fri", "09:00-18:00",
    ":", ": ", "- ", "\n", "\n  ", "\n    ", "{", "}", "[", "]", ",", "&a ", "*a", "<<: ", "!!str ", "!!int ",
    "'", '"', "#", "---", "...", "~", "null", "yes", "\t", "?", "|", ">", "%", "@", "\x00", "\ufeff", "é",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(YAML_PIECES, max_size=40).map("".join))
def test_yamlish_text_raises_only_policy_error(text: str) -> None:
    try:
        load_policy_text(text, "fuzz.yaml", str(CATALOG))
    except PolicyError as error:
        assert error.issues
        assert not any("internal error" in issue.message for issue in error.issues), str(error)


OFFICE_TEXT = OFFICE.read_text(encoding="utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_office_policy_raises_only_policy_error(data: st.DataObject) -> None:
    lines = OFFICE_TEXT.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        edit = data.draw(st.sampled_from(["drop", "duplicate", "replace"]))
        if edit == "drop":
            del lines[index]
        elif edit == "duplicate":
            lines.insert(index, lines[index])
        else:
            line = lines[index]
            position = data.draw(st.integers(0, max(len(line) - 1, 0)))
            lines[index] = line[:position] + data.draw(YAML_PIECES) + line[position + 1:]
        if not lines:
            break
    try:
        load_policy_text("".join(lines), "fuzz.yaml", str(CATALOG))
    except PolicyError as error:
        assert error.issues
        assert not any("internal error" in issue.message for issue in error.issues), str(error)


@pytest.mark.parametrize("listen", ["999.1.1.1:9108", "[127.0.0.1]:9108", "localhost:0", "9108", "::1:9108"])
def test_bad_metrics_listen(listen: str) -> None:
    issues = issues_of(MINIMAL + f'metrics: {{listen: "{listen}"}}\n')
    assert issues == [
        f"p.yaml:5:19: listen address '{listen}' is not valid (expected HOST:PORT, e.g. 127.0.0.1:9108 or [::1]:9108)"
    ]


def test_missing_catalog_is_reported_at_its_first_line(tmp_path: Path) -> None:
    missing = tmp_path / "catalog.yaml"
    assert issues_of(MINIMAL, str(missing)) == [f"{missing}:1:1: cannot read catalog: no such file"]
