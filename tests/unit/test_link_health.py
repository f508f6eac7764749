"""Link health verdicts from probe rounds (daemon/link_health.py), and acting on them, without root."""

from __future__ import annotations

from dataclasses import asdict

from gatewayd.cli.status import render_links
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.daemon.link_health import LinkHealth, LinkReport, LinkState
from gatewayd.daemon.link_probes import RoundResult
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.model import LinkProbe

ANSWERED = RoundResult(True, 0.010)
SILENT = RoundResult(False, None)
TWO_LINKS = """version: 1
interfaces: { lan: lan0 }
links:
  a: { interface: wan1, upload: 20mbit, download: 100mbit, probe: { icmp: [203.0.113.53], fall: 2, rise: 2 } }
  b: { interface: wan2, upload: 10mbit, download: 50mbit }
classes:
  default: { priority: 3, guaranteed: 10%, limit: 100% }
"""


def feed(state: LinkState, results: list[RoundResult]) -> list[str | None]:
    return [state.record(result, float(at)) for at, result in enumerate(results)]


def test_fall_silent_rounds_in_a_row_take_a_link_down_and_rise_bring_it_back() -> None:
    state = LinkState(LinkProbe(icmp=(), fall=3, rise=2))
    changes = feed(state, [ANSWERED, SILENT, SILENT, ANSWERED, SILENT, SILENT, SILENT])
    assert changes == [None, None, None, None, None, None, "3 rounds unanswered"]
    assert not state.up and state.first_bad_at == 4.0
    assert feed(state, [ANSWERED, SILENT, ANSWERED, ANSWERED]) == [None, None, None, "answering again"]
    assert state.up


def test_loss_over_the_threshold_takes_a_link_down_even_without_fall_in_a_row() -> None:
    state = LinkState(LinkProbe(fall=100, rise=1, max_loss=0.2))
    changes = feed(state, [ANSWERED, SILENT, ANSWERED, SILENT, ANSWERED])
    assert changes[-1] == "loss 40% over 20%"
    # Back only once the window's loss is within the threshold again, whatever `rise` says.
    changes = feed(state, [ANSWERED] * 5)
    assert changes.index("answering again") == 4 and state.up  # 10 rounds: 2 lost = 20%


def test_latency_over_the_threshold_counts_as_failing() -> None:
    state = LinkState(LinkProbe(fall=100, max_latency_ms=50))
    assert feed(state, [RoundResult(True, 0.080)] * 5)[-1] == "latency 80ms over 50ms"


class FakeSwitch:
    def __init__(self) -> None:
        self.choices: list[frozenset[str]] = []
        self.ended: list[int] = []

    def choose_links(self, plan: Plan, up: frozenset[str]) -> None:
        self.choices.append(up)

    def end_connections(self, link_number: int) -> int:
        self.ended.append(link_number)
        return 7


def test_a_failed_link_leaves_the_choice_first_then_only_its_connections_end() -> None:
    switch = FakeSwitch()
    health = LinkHealth(switch)
    plan = compile_plan(load_policy_text(TWO_LINKS, "links.yaml"))
    health.adopt(plan)
    health.stop()  # no prober threads: this test feeds the rounds itself
    for at in range(2):
        health.results.put(("a", SILENT, float(at)))
    health.poll()
    assert switch.choices == [frozenset({"b"})]
    assert switch.ended == [1]  # link a is number 1; b's connections are not touched
    (a, b) = health.reports()
    assert (a.up, a.failovers, a.ended_connections, b.up, b.probed) == (False, 1, 7, True, False)
    for at in range(2, 4):
        health.results.put(("a", ANSWERED, float(at)))
    health.poll()
    assert switch.choices[-1] == frozenset({"a", "b"}) and switch.ended == [1]
    assert health.reports()[0].failbacks == 1


def test_a_reload_keeps_a_down_link_out_of_the_new_tables_choice() -> None:
    switch = FakeSwitch()
    health = LinkHealth(switch)
    plan = compile_plan(load_policy_text(TWO_LINKS, "links.yaml"))
    health.adopt(plan)
    health.stop()
    for at in range(2):
        health.results.put(("a", SILENT, float(at)))
    health.poll()
    health.adopt(compile_plan(load_policy_text(TWO_LINKS, "links.yaml"), plan))  # same links: verdict kept
    health.stop()
    assert switch.choices == [frozenset({"b"}), frozenset({"b"})]


def test_status_text_has_a_line_per_link() -> None:
    reports = [LinkReport("fibre", "wan1", 3, True, False, 0.0123, 0.4, 2, 1, 17, 0.0),
               LinkReport("cheap", "wan2", 1, False, True, None, None, 0, 0, 0, 0.0)]
    assert render_links([asdict(r) for r in reports]) == [
        "links       fibre      wan1     weight 3   DOWN            rtt 12.3 ms    loss 40%  "
        "failovers 2 failbacks 1 ended 17",
        "            cheap      wan2     weight 1   up (not probed) rtt -          loss -    "
        "failovers 0 failbacks 0 ended 0",
    ]
