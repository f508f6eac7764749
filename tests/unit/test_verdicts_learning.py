"""The verdict handler's side of DNS learning: the answer's origin from the packet mark,
entries whose app changed replace the kernel's, answers released before the kernel holds
what they taught, and the learning metrics."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from scapy.layers.inet import IP, TCP

from gatewayd.apply.learned_writer import LearnedWriter
from gatewayd.apply.nft import LearnedElement
from gatewayd.classify.dns_learning import AnswerOrigin
from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.compile import marks
from gatewayd.compile.kernel_names import MAP_LEARNED_V4, set_app_chain
from gatewayd.compile.plan import Plan
from gatewayd.daemon.verdicts import VerdictHandler, answer_origin
from gatewayd.lab.gateway import metric_value
from gatewayd.metrics.base import CollectorSet
from gatewayd.metrics.daemon_state import DaemonMetrics
from gatewayd.metrics.dns_learning import DnsLearningCollector
from tests.unit.test_dns_learning import FINANCE, GUEST, answer, catalog, query
from tests.unit.test_qos_plan import plan_of

QUEUED_ANSWER = marks.QUEUE_REQUEST | marks.FROM_SERVER


class QueuedPacket:
    """What VerdictHandler uses of a netfilterqueue packet."""

    ids = iter(range(1, 1 << 32))  # the queue numbers its packets; the handler counts gaps in them

    def __init__(self, payload: bytes, mark: int) -> None:
        self.payload, self.mark, self.accepted = payload, mark, False
        self.id = next(QueuedPacket.ids)

    def get_payload(self) -> bytes:
        return self.payload

    def get_mark(self) -> int:
        return self.mark

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def accept(self) -> None:
        self.accepted = True


class RecordingKernel:
    """The learned maps: records each write, one (map, elements) per map it touched."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[LearnedElement]]] = []
        self.transactions = 0

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        self.transactions += 1
        self.calls.extend((map_name, list(elements)) for map_name, elements in batches)


class Daemon:
    def __init__(self, classifier: Classifier, plan: Plan) -> None:
        self.classifier, self.plan = classifier, plan

    def current_classifier(self) -> Classifier:
        return self.classifier

    def current_plan(self) -> Plan:
        return self.plan


class ManualWriter(LearnedWriter):
    """The daemon's writer without its thread: each test says when a batch goes in."""

    def __init__(self, kernel: RecordingKernel, numbers: dict[str, int]) -> None:
        super().__init__(kernel, clock=lambda: 1000.0)
        self.use_numbers(numbers)

    def write_all(self) -> None:
        while self.write_next_batch():
            pass


def handler() -> tuple[VerdictHandler, RecordingKernel, Classifier, ManualWriter]:
    plan = plan_of()
    for app in catalog():  # the catalog of these tests, numbered like the policy's apps
        plan.numbering.apps.numbers.setdefault(app.id, max(plan.numbering.apps.numbers.values()) + 1)
    classifier = Classifier(ClassifierTables.build(catalog()))
    kernel = RecordingKernel()
    writer = ManualWriter(kernel, plan.numbering.apps.numbers)
    verdicts = VerdictHandler(classifier, plan.numbering, writer, DaemonMetrics(CollectorRegistry()))
    return verdicts, kernel, classifier, writer


def test_only_the_kernels_origin_bits_vouch_for_an_answer() -> None:
    assert answer_origin(QUEUED_ANSWER | marks.RESOLVER_ANSWER) is AnswerOrigin.NAMED_RESOLVER
    assert answer_origin(QUEUED_ANSWER | marks.ROUTER_ANSWER) is AnswerOrigin.ROUTER
    assert answer_origin(QUEUED_ANSWER) is AnswerOrigin.OTHER  # an undecided flow's first packets


def test_an_answer_without_the_resolver_bit_teaches_the_kernel_nothing() -> None:
    verdicts, kernel, _, writer = handler()
    verdicts(QueuedPacket(query(GUEST, 40000, 1, "erp.example.com"), marks.QUEUE_REQUEST))
    forged = QueuedPacket(answer(GUEST, 40000, 1, "erp.example.com", "203.0.113.30"), QUEUED_ANSWER)
    verdicts(forged)
    writer.write_all()
    assert forged.accepted and kernel.calls == []


def test_a_changed_app_replaces_the_kernels_entry_at_once() -> None:
    verdicts, kernel, _, writer = handler()
    numbers = verdicts.numbering.apps.numbers
    for port, txid, name in ((40001, 1, "crm.example.com"), (40002, 2, "web.wechat.com")):
        verdicts(QueuedPacket(query(FINANCE, port, txid, name), marks.QUEUE_REQUEST))
        verdicts(QueuedPacket(answer(FINANCE, port, txid, name, "203.0.113.77"), QUEUED_ANSWER | marks.RESOLVER_ANSWER))
        writer.write_all()
    assert kernel.calls == [
        (MAP_LEARNED_V4, [LearnedElement("203.0.113.77", set_app_chain(numbers["crm"]), 300)]),
        # Sent at once, though the book knows it fresh: its app changed (the kernel side replaces it).
        (MAP_LEARNED_V4, [LearnedElement("203.0.113.77", set_app_chain(numbers["wechat"]), 300)]),
    ]


def test_learning_results_are_exported_with_bounded_labels() -> None:
    verdicts, _, classifier, _ = handler()
    verdicts(QueuedPacket(answer(GUEST, 40003, 1, "www.youku.com", "203.0.113.30"), QUEUED_ANSWER))
    verdicts(QueuedPacket(answer(GUEST, 40004, 2, "www.youku.com", "203.0.113.30"),
                          QUEUED_ANSWER | marks.RESOLVER_ANSWER))
    registry = CollectorRegistry()
    registry.register(CollectorSet([DnsLearningCollector(Daemon(classifier, plan_of()))]))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gatewayd_dns_answers_total", result="not_a_resolver") == 1
    assert metric_value(text, "gatewayd_dns_answers_total", result="unsolicited") == 1
    assert metric_value(text, "gatewayd_dns_answers_total", result="learned") == 0
    assert metric_value(text, "gatewayd_dns_addresses_refused_total", reason="rate_limited") == 0


def test_an_answer_goes_before_the_kernel_holds_its_address_and_the_first_packet_to_it_is_still_decided() -> None:
    verdicts, kernel, _, writer = handler()
    verdicts(QueuedPacket(query(FINANCE, 40005, 1, "crm.example.com"), marks.QUEUE_REQUEST))
    released = QueuedPacket(answer(FINANCE, 40005, 1, "crm.example.com", "203.0.113.88"),
                            QUEUED_ANSWER | marks.RESOLVER_ANSWER)
    verdicts(released)
    assert released.accepted and kernel.calls == [] and writer.stats.pending == 1  # handed over, not yet written
    # Not in the kernel's map, so the kernel queues the flow's first packet: the classifier's memory decides it.
    syn = QueuedPacket(bytes(IP(src=FINANCE, dst="203.0.113.88") / TCP(sport=50000, dport=443, flags="S")),
                       marks.QUEUE_REQUEST)
    verdicts(syn)
    assert syn.accepted
    assert marks.app_number_of(syn.mark) == verdicts.numbering.apps.numbers["crm"]
    writer.write_all()
    assert [element.address for _, elements in kernel.calls for element in elements] == ["203.0.113.88"]
