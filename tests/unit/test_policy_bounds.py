"""Bounded work on any policy file (issue 12, item 4): refused with the limit named, or checked, in bounded time.

`gatewayd check` runs in a subprocess with at most CHECK_CPU_SECONDS of CPU and
CHECK_ADDRESS_SPACE of memory, and a wall-clock timeout, so a regression fails
(killed, or timed out) instead of hanging the suite or the machine. These are
guards, not benchmarks: the bounds are generous for a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd import cli
from gatewayd.compile.intervals import disjoint_networks, disjoint_port_ranges
from gatewayd.control.confirm_window import confirm_window_seconds
from gatewayd.daemon.control_commands import control_commands
from gatewayd.daemon.last_good import LastGoodStore
from gatewayd.policy.applications import load_catalog
from gatewayd.policy.errors import PolicyIssue, escape_untrusted
from gatewayd.policy.fields import parse_network
from gatewayd.policy.model import Location

CORPUS = Path(__file__).parent / "policy_bounds_corpus"
REPOSITORY = Path(__file__).resolve().parents[2]
EXPECT = "# expect: "
CHECK_CPU_SECONDS = 10
CHECK_ADDRESS_SPACE = 600 * 2**20  # virtual memory, so resident memory stays below it too
WALL_TIMEOUT_SECONDS = 120  # a FIFO hang uses no CPU: this catches it
HEAD = """\
version: 1
interfaces: {lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit}
classes:
  default: {priority: 3}
"""


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CHECK_CPU_SECONDS, CHECK_CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (CHECK_ADDRESS_SPACE, CHECK_ADDRESS_SPACE))


def gatewayd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`gatewayd ARGS` within the CPU, memory and time bounds; a kill by a limit fails the test."""
    result = subprocess.run([sys.executable, "-m", "gatewayd", *map(str, args)], capture_output=True, text=True,
                            cwd=REPOSITORY, preexec_fn=_bounded, timeout=WALL_TIMEOUT_SECONDS, check=False)
    assert result.returncode >= 0, f"killed by signal {-result.returncode} (CPU or memory bound):\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def refused(*args: str | Path) -> list[str]:
    """The error lines of a `gatewayd` run that must fail."""
    result = gatewayd(*args)
    assert result.returncode == 1, result.stdout
    return result.stderr.splitlines()


def written(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def text_at(path: Path, line: int, column: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[line - 1][column - 1:]


def position_of(error: str, path: Path) -> tuple[int, int]:
    assert error.startswith(f"{path}:"), error
    line, column, _ = error[len(str(path)) + 1:].split(":", 2)
    return int(line), int(column)


# --- the kept corpus: alias bombs, merge fan-out, recursion, foreign files, control characters ---

@pytest.mark.parametrize("fixture", sorted(CORPUS.glob("*.yaml")), ids=lambda path: path.stem)
def test_corpus_file_is_refused_with_exactly_its_expected_errors(fixture: Path) -> None:
    expected = [line[len(EXPECT):] for line in fixture.read_text(encoding="utf-8").splitlines()
                if line.startswith(EXPECT)]
    assert expected, f"{fixture.name} declares no '# expect:' lines"
    assert refused("check", fixture) == [f"{fixture}:{line}" for line in expected]


# --- YAML aliases reused many times: refused at the alias that passes the node limit ---

def members_from_3000_groups() -> str:
    members = "".join(f"      - 198.51.100.{i % 250 + 1}\n" for i in range(10_000))
    groups = "".join(f"  g{i}: {{members: *m}}\n" for i in range(1, 3000))
    return HEAD + "groups:\n  g0:\n    members: &m\n" + members + groups


def domains_from_4000_apps() -> str:
    domains = "".join(f"      - d{i}.example.com\n" for i in range(20_000))
    apps = "".join(f"  a{i}: {{name: A, category: ads, domains: *d}}\n" for i in range(1, 4000))
    return HEAD + "applications:\n  a0:\n    name: A\n    category: ads\n    domains: &d\n" + domains + apps


def app_list_from_20000_rules() -> str:
    apps = "".join(f"  app{i}: {{name: A, category: ads, ports: [tcp/{i + 1}]}}\n" for i in range(3000))
    listed = "".join(f"      - app{i % 3000}\n" for i in range(5000))
    rules = "".join(f"  - {{name: r{i}, apps: *l, action: block}}\n" for i in range(1, 20_000))
    return HEAD + "applications:\n" + apps + "rules:\n  - name: r0\n    action: block\n    apps: &l\n" + listed + rules


@pytest.mark.parametrize("make", [members_from_3000_groups, domains_from_4000_apps, app_list_from_20000_rules],
                         ids=lambda make: make.__name__)
def test_alias_reused_many_times_is_refused_at_the_alias(tmp_path: Path, make: Callable[[], str]) -> None:
    policy = written(tmp_path, make())
    (error,) = refused("check", policy)
    assert "the limit is 400,000 (an alias counts as every node it repeats)" in error
    assert text_at(policy, *position_of(error, policy)).startswith("*")


def test_a_syntax_error_at_the_end_of_a_big_file_is_reported_within_the_bound(tmp_path: Path) -> None:
    # The pure-Python parser, run again for its messages, reads about 1 MB a second.
    blocklist = "".join(f"      - blocked{i}.example.com\n" for i in range(150_000))
    text = HEAD + "applications:\n  blocklist:\n    name: B\n    category: ads\n    domains:\n" + blocklist
    policy = written(tmp_path, text + "rules: [unclosed\n")
    line = text.count("\n") + 2
    assert refused("check", policy) == [
        f"{policy}:{line}:1: invalid YAML: while parsing a flow sequence, did not find expected ',' or ']'"]


# --- many rules: linear checking, and a limit ---

def distinct_rules(count: int) -> str:
    """Rules no earlier one covers (a different group or app each), so each is really compared."""
    groups = "".join(f"  g{i}: {{members: [198.51.100.{i}]}}\n" for i in range(60))
    # 300 apps: with the catalog's, within the 9-bit app id (marks.py); 60 groups x 300 apps > 10,000 pairs
    apps = "".join(f"  a{i}: {{name: A, category: ads, ports: [tcp/{i + 1}]}}\n" for i in range(300))
    rules = "".join(f"  - {{name: r{i}, groups: [g{i % 60}], apps: [a{(i // 60) % 300}], action: block}}\n"
                    for i in range(count))
    return HEAD + "groups:\n" + groups + "applications:\n" + apps + "rules:\n" + rules


def test_ten_thousand_distinct_rules_check_within_the_bound(tmp_path: Path) -> None:
    # Every rule was compared with every earlier one: 5,000 rules took 24 s, 10,000 over a minute.
    result = gatewayd("check", written(tmp_path, distinct_rules(10_000)))
    assert result.returncode == 0, result.stderr
    assert "10000 rules" in result.stdout


def test_more_rules_than_the_limit_are_refused_naming_it(tmp_path: Path) -> None:
    rules = "".join(f"  - {{name: r{i}, action: block}}\n" for i in range(12_000))
    policy = written(tmp_path, HEAD + "rules:\n" + rules)
    assert refused("check", policy) == [f"{policy}:6:3: the policy has 12,000 rules; the limit is 10,000"]


def test_a_hundred_thousand_rules_are_refused_within_the_bound(tmp_path: Path) -> None:
    rules = "".join(f"  - name: r{i}\n    apps: [erp]\n    action: block\n" for i in range(100_000))
    (error,) = refused("check", written(tmp_path, HEAD + "rules:\n" + rules))
    assert "the limit is 400,000" in error


# --- ports: a limit, and rendering that stays linear ---

def app_with_ports(count: int) -> str:
    ports = "".join(f"      - tcp/{i % 65535 + 1}\n" for i in range(count))
    return HEAD + "applications:\n  big:\n    name: Big\n    category: ads\n    ports:\n" + ports


def test_an_app_with_a_hundred_thousand_ports_is_refused_naming_the_limit(tmp_path: Path) -> None:
    policy = written(tmp_path, app_with_ports(100_000))
    assert refused("check", policy) == [
        f"{policy}:10:7: 'ports' of application 'big' has 100,000 entries; the limit is 4,096"]


def test_an_app_with_ports_up_to_the_limit_renders_within_the_bound(tmp_path: Path) -> None:
    policy = written(tmp_path, app_with_ports(4096))
    assert gatewayd("check", policy).returncode == 0
    rendered = gatewayd("render", policy)
    assert rendered.returncode == 0 and "tcp . 4096 : goto" in rendered.stdout


def _cut_one_by_one_ports(entries: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, str]]:
    """The quadratic original, kept as the reference the interval version must equal."""
    taken: dict[str, list[tuple[int, int]]] = {}
    result: list[tuple[str, int, int, str]] = []
    for proto, first, last, target in sorted(entries, key=lambda e: e[2] - e[1]):
        pieces = [(first, last)]
        for low, high in taken.get(proto, []):
            pieces = [part for a, b in pieces
                      for part in ((a, min(b, low - 1)), (max(a, high + 1), b)) if part[0] <= part[1]]
        result.extend((proto, a, b, target) for a, b in pieces)
        taken.setdefault(proto, []).append((first, last))
    return sorted(result)


def _cut_one_by_one_networks(pairs: list[tuple[Any, str]]) -> list[tuple[Any, str]]:
    by_specificity = sorted(pairs, key=lambda p: (p[0].version, -p[0].prefixlen))
    taken: list[Any] = []
    result: list[tuple[Any, str]] = []
    for network, app in by_specificity:
        pieces = [network]
        for inner in (inner for inner in taken if inner.version == network.version):
            pieces = [part for piece in pieces for part in
                      (piece.address_exclude(inner) if inner.subnet_of(piece)
                       else [] if piece.subnet_of(inner) else [piece])]
        result.extend((piece, app) for piece in pieces)
        taken.append(network)
    return sorted(result, key=lambda p: (p[0].version, int(p[0].network_address)))


PORT_ENTRY = st.tuples(st.sampled_from(["tcp", "udp"]), st.integers(1, 80), st.integers(0, 40)).map(
    lambda t: (t[0], t[1], min(65535, t[1] + t[2])))


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(PORT_ENTRY, max_size=12))
def test_disjoint_port_ranges_equal_the_one_by_one_cut(entries: list[tuple[str, int, int]]) -> None:
    targets = [(proto, first, last, f"app{i}") for i, (proto, first, last) in enumerate(entries)]
    assert disjoint_port_ranges(targets) == _cut_one_by_one_ports(targets)


NETWORK = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(24, 32)).map(lambda t: f"198.51.100.{t[0]}/{t[1]}"),
    st.tuples(st.integers(0, 255), st.integers(120, 128)).map(lambda t: f"2001:db8::{t[0]:x}/{t[1]}"),
).map(lambda text: parse_network(str(ipaddress.ip_network(text, strict=False))))


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(NETWORK, max_size=10))
def test_disjoint_networks_equal_the_one_by_one_cut(networks: list[Any]) -> None:
    pairs = [(network, f"app{i}") for i, network in enumerate(networks)]
    assert disjoint_networks(pairs) == _cut_one_by_one_networks(pairs)


# --- numbers: range-checked at their position; check runs render's compile ---

def test_a_five_thousand_digit_link_rate_is_refused_at_its_position(tmp_path: Path) -> None:
    policy = written(tmp_path, HEAD.replace("upload: 20mbit", "upload: " + "9" * 5000 + "mbit"))
    expected = [f"{policy}:2:44: rate '{'9' * 40}... (5,004 characters)' is more than 1000gbit, the limit"]
    assert refused("check", policy) == expected
    assert refused("render", policy) == expected  # it used to pass check and crash render (OverflowError)


def test_a_five_thousand_digit_integer_is_refused_at_its_position(tmp_path: Path) -> None:
    policy = written(tmp_path, HEAD.replace("priority: 3", "priority: " + "9" * 5000))
    assert refused("check", policy) == [
        f"{policy}:4:23: 'priority' of class 'default' has 5,000 digits, out of range (expected 0 to 7)"]


def test_check_reports_what_render_would_fail_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from gatewayd.compile import checked

    def overflowing(*_: object) -> None:
        raise OverflowError("cannot convert to a 64-bit rate")

    monkeypatch.setattr(checked, "compile_plan", overflowing)
    policy = written(tmp_path, HEAD)
    assert cli.main(["check", str(policy)]) == 1
    assert capsys.readouterr().err == (f"{policy}:2:1: the policy passed its checks but does not compile "
                                       "(OverflowError: cannot convert to a 64-bit rate)\n")


# --- files that are not regular, or too big: policy, catalog and bindings file ---

@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "policy.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture()
def huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as sparse:  # 17 MiB that take no disk
        sparse.truncate(17 * 2**20)
    return path


def test_a_fifo_as_the_policy_is_refused_at_once(fifo: Path) -> None:
    assert refused("check", fifo) == [f"{fifo}:1:1: cannot read policy: is not a regular file (it is a FIFO)"]


def test_dev_zero_as_the_policy_is_refused_at_once() -> None:
    assert refused("check", "/dev/zero") == [
        "/dev/zero:1:1: cannot read policy: is not a regular file (it is a character device)"]


def test_a_huge_policy_is_refused_before_it_is_read(huge: Path) -> None:
    assert refused("check", huge) == [
        f"{huge}:1:1: cannot read policy: the file has 17,825,792 bytes; the limit is 16,777,216"]


@pytest.mark.parametrize("catalog", ["fifo", "/dev/zero", "huge"])
def test_a_catalog_that_is_no_regular_file_or_too_big_is_refused(
        catalog: str, fifo: Path, huge: Path, tmp_path: Path) -> None:
    path = {"fifo": fifo, "huge": huge}.get(catalog, Path(catalog))
    errors = refused("--catalog", path, "check", written(tmp_path, HEAD))
    assert errors[0].startswith(f"{path}:1:1: cannot read catalog: ")
    assert "FIFO" in errors[0] or "character device" in errors[0] or "the limit is 16,777,216" in errors[0]


@pytest.mark.parametrize("bindings", ["fifo", "/dev/zero", "huge"])
def test_a_bindings_file_that_is_no_regular_file_or_too_big_is_refused(
        bindings: str, fifo: Path, huge: Path, tmp_path: Path) -> None:
    path = {"fifo": fifo, "huge": huge}.get(bindings, Path(bindings))
    policy = written(tmp_path, HEAD + f"security:\n  bindings:\n    file: {path}\n")
    (error,) = refused("check", policy)
    assert error.startswith(f"{policy}:7:11: cannot read bindings file: ")


def test_a_bindings_path_to_another_file_never_echoes_its_content(tmp_path: Path) -> None:
    secret = written(tmp_path, "root:$y$j9T$s3cret-hash:19000:0:99999:7:::\nadmin hunter2-password\n", "shadow")
    policy = written(tmp_path, HEAD + f"security:\n  bindings:\n    file: {secret}\n")
    errors = refused("check", policy)
    assert errors and all(error.startswith(f"{secret}:") for error in errors)
    messages = "\n".join(error[len(f"{secret}:"):] for error in errors)  # the path itself names "root"
    assert not any(word in messages for word in ("s3cret", "hunter2", "root", "admin"))


# --- unknown keys: reported, without a suggestion computed for each of 100,000 ---

def test_a_hundred_thousand_unknown_keys_are_reported_within_the_bound(tmp_path: Path) -> None:
    keys = "".join(f"    prioritx{i}: 1\n" for i in range(100_000))
    policy = written(tmp_path, HEAD.replace("  default: {priority: 3}\n", "  default:\n    priority: 3\n" + keys))
    errors = refused("check", policy)
    assert len(errors) == 100_000
    assert all("unknown key 'prioritx" in error for error in errors)
    assert sum("did you mean" in error for error in errors) == 200


# --- apply --confirm-within: finite, positive, bounded, on the command line and in the daemon ---

@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf", "-1", "0", "3601", "1e400", "soon"])
def test_apply_refuses_a_confirm_window_that_never_or_at_once_reverts(
        seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["apply", "new.yaml", f"--confirm-within={seconds}"])
    assert "confirm_within must be a number of seconds more than 0 and at most 3600" in capsys.readouterr().err


def test_apply_keeps_a_sane_confirm_window() -> None:
    args = cli.build_parser().parse_args(["apply", "new.yaml", "--confirm-within", "60"])
    assert isinstance(args, argparse.Namespace) and args.confirm_within == 60.0


@pytest.mark.parametrize("sent", [float("nan"), float("inf"), -5, 0, 86400, "60; rm", True, [60]])
def test_the_daemon_refuses_a_bad_confirm_window_from_the_socket(sent: object) -> None:
    begun: list[object] = []
    answers: list[dict[str, Any]] = []

    class Changes:
        def begin(self, *args: object) -> None:
            begun.append(args)

    handlers = control_commands(lambda: {}, Changes())  # type: ignore[arg-type]
    handlers["apply"]({"command": "apply", "policy": "/x.yaml", "confirm_within": sent}, answers.append)
    assert begun == []
    assert len(answers) == 1 and answers[0]["ok"] is False and "confirm_within must be" in answers[0]["error"]
    assert confirm_window_seconds(30) == 30.0


# --- error text: control and bidi characters never reach a terminal ---

def test_issue_text_escapes_control_and_bidi_characters() -> None:
    message = "key 'a\x1b[31m\x07\x7f\x9b\u202e\u2066\u200f\u061c\nfake.yaml:1:1: forged'"
    printed = str(PolicyIssue(Location("p\x1b.yaml", 1, 2), message))
    assert printed == ("p\\x1b.yaml:1:2: key 'a\\x1b[31m\\x07\\x7f\\x9b\\u202e\\u2066\\u200f\\u061c"
                       "\\x0afake.yaml:1:1: forged'")
    assert escape_untrusted("plain ASCII, 中文 and é stay") == "plain ASCII, 中文 and é stay"


def test_issue_text_is_cut_at_a_bound() -> None:
    printed = str(PolicyIssue(Location("p.yaml", 1, 1), "x" * 100_000))
    assert len(printed) < 2100 and printed.endswith("(message cut at 2,000 characters)")


# --- last-known-good copy: private whatever the umask ---

def test_last_good_copy_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "gatewayd"
    store = LastGoodStore(state_dir)
    old_umask = os.umask(0o022)
    try:
        (state_dir.parent).mkdir()
        store.save("version: 1\n")
        stale = store.path.with_suffix(".tmp")
        stale.write_text("left by a crash")
        stale.chmod(0o644)
        store.save("version: 1  # again\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.path.read_text() == "version: 1  # again\n"


def test_a_big_real_policy_stays_accepted_within_the_bound(tmp_path: Path) -> None:
    # What the README promises: 60,000 named hosts and a 100,000-domain blocklist.
    groups = "".join(f"  branch-{g}:\n    members:\n" + "".join(f"      - 2001:db8:5::{g * 1000 + h + 1:x}\n"
                                                             for h in range(1000)) for g in range(60))
    blocklist = "".join(f"      - blocked{i}.example.com\n" for i in range(100_000))
    policy = written(tmp_path, HEAD + "groups:\n" + groups + "applications:\n  blocklist:\n    name: Blocked\n"
                     "    category: ads\n    domains:\n" + blocklist
                     + "rules:\n  - {name: no-blocked, apps: [blocklist], action: block}\n")
    result = gatewayd("check", policy)
    assert result.returncode == 0, result.stderr
    apps = len(load_catalog(None, [])) + 1  # the catalog's and the policy's own
    assert result.stdout == f"{policy}: OK (60 groups, 1 rules, 1 classes, {apps} apps)\n"
