"""Rules once per flow and epoch (compile/decision_epoch.py), the schedule boundaries that start
epochs (compile/schedule.py, daemon/schedule_epochs.py) and label bits reused after a cycle."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from gatewayd.apply.epoch_labels import ready_epoch_label
from gatewayd.compile import marks
from gatewayd.compile.decision_epoch import advance_script, decided_flows_chain, epoch_label, with_epoch
from gatewayd.compile.plan import compile_plan
from gatewayd.compile.schedule import schedule_boundaries, seconds_to_next_boundary
from gatewayd.daemon.schedule_epochs import SETTLE_SECONDS, ScheduleEpochs, seconds_into_local_day
from gatewayd.policy.loader import load_policy
from gatewayd.policy.model import HourRange, Schedule

REPO = Path(__file__).resolve().parents[2]
OFFICE = REPO / "policies" / "office.yaml"
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


@pytest.fixture(scope="module")
def office_table_text() -> str:
    return compile_plan(load_policy(str(OFFICE))).ruleset.table.render()


def chain_text(table_text: str, name: str) -> str:
    start = table_text.index(f"\tchain {name} {{")
    return table_text[start:table_text.index("\t}", start)]


def test_original_packets_reach_the_rules_only_through_the_epoch_check(office_table_text: str) -> None:
    enforce = chain_text(office_table_text, "enforce")
    assert "ct direction original jump decided_flows" in enforce
    assert "jump rules" not in enforce
    assert office_table_text.count("goto rules\n") == 1  # from decided_flows, the only way in


def test_blocked_and_undecided_flows_never_take_the_shortcut() -> None:
    skip, tag, into_rules = (rule.statement for rule in decided_flows_chain(0).rules)
    label = marks.FIRST_EPOCH_LABEL
    # Blocked flows run do_block on every packet (a reset each time), as before.
    assert skip == f"ct label {label} ct mark & 0x{marks.BLOCK_BIT:08x} == 0 return"
    # Only a decided app is tagged: the classifier's verdict must still meet the rules.
    assert tag == f"ct mark & 0x{marks.APP_MASK:08x} != 0 ct label set {label}"
    assert into_rules == "goto rules"


def test_epochs_cycle_through_gatewayds_own_label_bits() -> None:
    bits = [epoch_label(e) for e in range(3 * marks.EPOCH_LABELS)]
    assert set(bits) == set(range(marks.FIRST_EPOCH_LABEL, marks.FIRST_EPOCH_LABEL + marks.EPOCH_LABELS))
    assert max(bits) <= 127 and min(bits) >= 64  # the low 64 label bits are other tools'
    assert epoch_label(5) != epoch_label(6) and epoch_label(5) == epoch_label(5 + marks.EPOCH_LABELS)
    with pytest.raises(ValueError):
        epoch_label(-1)


def test_an_epoch_changes_the_decided_flows_chain_and_nothing_else() -> None:
    table = compile_plan(load_policy(str(OFFICE))).ruleset.table
    moved = with_epoch(table, 7)
    changed = [(a.name, b.name) for a, b in zip(table.chains, moved.chains, strict=True) if a != b]
    assert changed == [("decided_flows", "decided_flows")]
    assert f"ct label {epoch_label(7)} " in "\n".join(moved.chain("decided_flows").render())
    script = advance_script(table, 7)
    lines = script.splitlines()
    assert lines[0] == "flush chain inet gatewayd decided_flows"
    assert all(line.startswith("add rule inet gatewayd decided_flows ") for line in lines[1:])
    assert len(lines) == 1 + len(decided_flows_chain(7).rules)
    assert f"ct label set {epoch_label(7)}" in script


def test_schedule_boundaries_are_every_start_and_end_and_midnight_when_days_are_left_out() -> None:
    work = Schedule("work", WEEKDAYS, (HourRange(9 * 60, 18 * 60),))
    night = Schedule("night", EVERY_DAY, (HourRange(22 * 60, 3 * 60 + 30),))
    weekend = Schedule("weekend", frozenset({5, 6}), ())
    assert schedule_boundaries([work]) == {0, 540, 1080}
    assert schedule_boundaries([night]) == {1320, 210}
    assert schedule_boundaries([weekend]) == {0}
    assert schedule_boundaries([Schedule("always", EVERY_DAY, ())]) == frozenset()
    assert schedule_boundaries([Schedule("to-midnight", EVERY_DAY, (HourRange(1320, 1440),))]) == {1320, 0}


def test_the_next_boundary_is_the_nearest_ahead_and_one_now_is_tomorrows() -> None:
    boundaries = frozenset({540, 1080})
    assert seconds_to_next_boundary(boundaries, 539 * 60 + 59.5) == pytest.approx(0.5)
    assert seconds_to_next_boundary(boundaries, 600 * 60) == pytest.approx(480 * 60)
    assert seconds_to_next_boundary(boundaries, 1080 * 60 + 1) == pytest.approx((1440 - 1080 + 540) * 60 - 1)
    assert seconds_to_next_boundary(frozenset({540}), 540 * 60) == 86400
    assert seconds_to_next_boundary(frozenset(), 0) is None


class FakeClock:
    def __init__(self, at: float) -> None:
        self.now = at

    def __call__(self) -> float:
        return self.now


def policy_with_work_hours(hours: str) -> str:
    text = OFFICE.read_text()
    return text.replace('hours: "09:00-18:00"', f'hours: "{hours}"', 1)


def test_an_epoch_starts_just_after_each_boundary_of_the_rules_schedules(tmp_path: Path) -> None:
    start = 1_700_000_000.0
    into_day = seconds_into_local_day(start)
    boundary_minute = (int(into_day // 60) + 2) % 1440  # two minutes or less ahead, local time
    policy_file = tmp_path / "policy.yaml"
    end_minute = (boundary_minute + 60) % 1440
    policy_file.write_text(policy_with_work_hours(
        f"{boundary_minute // 60:02d}:{boundary_minute % 60:02d}-{end_minute // 60:02d}:{end_minute % 60:02d}"))
    policy = load_policy(str(policy_file))
    clock = FakeClock(start)
    epochs: list[int] = []

    def advance() -> int:
        epochs.append(len(epochs) + 1)
        return epochs[-1]

    watch = ScheduleEpochs(advance, wall_clock=clock)
    watch.adopt(policy)
    until = watch.seconds_to_next()
    assert until is not None
    expected = (boundary_minute * 60 - into_day) % 86400 + SETTLE_SECONDS
    assert until == pytest.approx(expected)
    clock.now += until - 0.05
    watch.poll()
    assert epochs == []  # not yet
    clock.now += 0.05
    watch.poll()
    assert epochs == [1]
    watch.poll()
    assert epochs == [1]  # once per boundary
    assert 0 < (watch.seconds_to_next() or 0) <= 86400


def test_a_failed_epoch_is_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def refuse() -> int:
        raise OSError("nft said no")

    clock = FakeClock(1_700_000_000.0)
    watch = ScheduleEpochs(refuse, wall_clock=clock)
    watch.adopt(load_policy(str(OFFICE)))  # office.yaml's work-hours schedule: boundaries exist
    until = watch.seconds_to_next()
    assert until is not None
    clock.now += until
    with caplog.at_level(logging.WARNING):
        watch.poll()
    assert "event=schedule_epoch_failed" in caplog.text
    assert watch.seconds_to_next() is not None


def test_a_policy_whose_rules_use_no_schedule_needs_no_epochs_between_reloads() -> None:
    policy = load_policy(str(OFFICE))
    unscheduled = type(policy.rules)(r for r in policy.rules if not r.schedule)
    assert len(unscheduled) < len(policy.rules), "office.yaml lost its scheduled rule"
    watch = ScheduleEpochs(lambda: 1, wall_clock=FakeClock(0.0))
    watch.adopt(replace(policy, rules=unscheduled))  # its schedules are still defined, just unused
    assert watch.seconds_to_next() is None


def test_a_run_starts_with_no_epoch_bits_and_a_reused_bit_is_cleared_first() -> None:
    cleared: list[int] = []

    def clear(bits: int) -> int:
        cleared.append(bits)
        return 3

    ready_epoch_label(0, first_of_run=True, clear=clear)
    assert cleared == [marks.EPOCH_LABEL_MASK]  # flows from an earlier run carry its epochs' bits
    assert sum(1 << epoch_label(e) for e in range(marks.EPOCH_LABELS)) == marks.EPOCH_LABEL_MASK
    cleared.clear()
    ready_epoch_label(marks.EPOCH_LABELS - 1, first_of_run=False, clear=clear)
    assert cleared == []  # every bit's first use in this run: no flow can carry it
    ready_epoch_label(marks.EPOCH_LABELS, first_of_run=False, clear=clear)
    ready_epoch_label(marks.EPOCH_LABELS + 5, first_of_run=False, clear=clear)
    assert cleared == [1 << marks.FIRST_EPOCH_LABEL, 1 << (marks.FIRST_EPOCH_LABEL + 5)]


def test_a_failed_clear_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(_bits: int) -> int:
        raise OSError(1, "not permitted")

    with caplog.at_level(logging.WARNING):
        ready_epoch_label(marks.EPOCH_LABELS, first_of_run=False, clear=refuse)
    assert "event=epoch_label_clear_failed" in caplog.text
