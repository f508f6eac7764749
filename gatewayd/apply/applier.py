"""Put a plan into the kernel, or leave the running one in place.

Order: nft table (one atomic transaction), then the HTB trees, then the queue
rule. If a later step fails, the previous plan is put back, so a policy that
fails to apply never leaves the office half-configured.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from gatewayd.apply.epoch_labels import ready_epoch_label
from gatewayd.apply.features import (
    KernelFeatures,
    StrictTrackingError,
    probe_kernel_features,
    require_strict_tcp_tracking,
)
from gatewayd.apply.guard_state import runtime_elements
from gatewayd.apply.host_sets import grant_classes, settle_after_swap
from gatewayd.apply.learned_writer import LearnedWriter, LearnedWriteStats, kernel_learned_writer
from gatewayd.apply.links import LinkError, LinkKernel
from gatewayd.apply.nft import NftError, NftKernel
from gatewayd.apply.queue_rule import QueueInstaller, QueueRuleError
from gatewayd.apply.tc import TcError, TcKernel
from gatewayd.compile.decision_epoch import advance_script, with_epoch
from gatewayd.compile.guard import ALL_TABLES as GUARD_TABLES
from gatewayd.compile.guard import teardown_script
from gatewayd.compile.kernel_names import set_app_chain
from gatewayd.compile.plan import Plan

log = logging.getLogger("gatewayd.apply")

SYS_CLASS_NET = Path("/sys/class/net")


class ApplyError(RuntimeError):
    pass


def missing_interfaces(plan: Plan) -> list[str]:
    wanted = [*(link.interface for link in plan.policy.wan_links()), *plan.policy.office_ports()]
    return [name for name in wanted if not (SYS_CLASS_NET / name).exists()]


class Applier:
    def __init__(self) -> None:
        self.nft = NftKernel()
        self.tc = TcKernel()
        self.probed = probe_kernel_features(self.nft)
        self.queue = QueueInstaller(self.nft, self.probed.native_queue)
        self.links = LinkKernel(self.nft)
        # The rules epoch in force (compile/decision_epoch.py): every swap of the table and every
        # schedule boundary starts a new one, so open flows run the rules again.
        self.epoch = -1
        self.learned_writer: LearnedWriter = kernel_learned_writer(time.monotonic)

    def kernel_features(self) -> KernelFeatures:
        """What was probed at start, with the leaf kind the first apply settled."""
        return replace(self.probed, leaf_qdisc=self.tc.leaf_kind)

    def learned_write_stats(self) -> LearnedWriteStats:
        return self.learned_writer.stats

    def apply(self, plan: Plan, previous: Plan | None) -> None:
        missing = missing_interfaces(plan)
        if missing:
            raise ApplyError(f"interface(s) {', '.join(missing)} named in the policy do not exist")
        try:
            require_strict_tcp_tracking(plan)
        except StrictTrackingError as exc:
            raise ApplyError(str(exc)) from exc
        epoch = self._next_epoch()
        try:
            self._swap_table(plan, epoch, self._guard_script(plan, previous))
        except NftError as exc:
            raise ApplyError(f"nftables refused the ruleset, nothing changed: {exc}") from exc
        self.epoch = epoch
        try:
            self.links.apply_routes(plan.link_routes, previous.link_routes if previous else ())
            self.tc.apply(plan.tc_trees, previous.tc_trees if previous else ())
            self._note_host_classes(plan)
            self.queue.install(plan.queue)
        except (LinkError, TcError, NftError, QueueRuleError, OSError) as exc:
            self._restore(previous)
            raise ApplyError(f"{exc}; the previous policy was put back" if previous else str(exc)) from exc

    def advance_epoch(self, plan: Plan) -> int:
        """A schedule boundary: start a new rules epoch in the running table (one small transaction),
        so every open decided flow runs the rules again on its next packet. The new epoch."""
        epoch = self._next_epoch()
        self.nft.run(advance_script(plan.ruleset.table, epoch))
        self.epoch = epoch
        return epoch

    def _next_epoch(self) -> int:
        """The next epoch, its label bit cleared from every flow if an earlier epoch used it."""
        epoch = self.epoch + 1
        ready_epoch_label(epoch, first_of_run=self.epoch < 0)
        return epoch

    def _swap_table(self, plan: Plan, epoch: int, guard_script: str) -> None:
        """The one transaction; no learned-address batch may land between the read of the learned
        maps it carries over and the swap, and the next ones use the new table's app numbers."""
        numbers = plan.numbering.apps.numbers
        with self.learned_writer.paused():
            carried = self.nft.carried_state({set_app_chain(n) for n in numbers.values()})
            self.nft.replace_table(with_epoch(plan.ruleset.table, epoch), carried, guard_script)
            self.learned_writer.use_numbers(numbers)

    def make_host_classes(self, plan: Plan, addresses: list[str]) -> int:
        """Make the classes of limited hosts the kernel has just seen; how many classes were added."""
        slots = {str(h.address): h for h in plan.host_slots.hosts}
        known = [slots[a] for a in addresses if a in slots]
        added = self.tc.make_host_classes(plan.tc_trees, {h.minor for h in known})
        grant_classes(self.nft, known, stray=[a for a in addresses if a not in slots])
        return added

    def _note_host_classes(self, plan: Plan) -> None:
        """The new table maps and lists every limited host as classless: match the classes tc holds."""
        made = self.tc.hosts_made(plan.tc_trees)
        settle_after_swap(self.nft, [h for h in plan.host_slots.hosts if h.minor in made],
                          [h for h in plan.host_slots.hosts if h.minor not in made])

    def _guard_script(self, plan: Plan, previous: Plan | None) -> str:
        """The LAN guard's tables and their runtime elements, for the same transaction."""
        elements = runtime_elements(plan.guard, previous.guard if previous else None, self.nft,
                                    plan.policy.interfaces.lan)
        present = {family: self.nft.present_objects(family, name) for family, name in GUARD_TABLES}
        return plan.guard.script(present, elements)

    def _restore(self, previous: Plan | None) -> None:
        if previous is None:
            self.teardown(None)
            return
        try:
            epoch = self._next_epoch()
            self._swap_table(previous, epoch, self._guard_script(previous, None))
            self.epoch = epoch
            self.links.apply_routes(previous.link_routes)
            self.tc.apply(previous.tc_trees)
            self._note_host_classes(previous)
            self.queue.install(previous.queue)
        except Exception:
            log.exception("event=restore_failed")

    def teardown(self, plan: Plan | None) -> None:
        """Remove everything gatewayd put in the kernel; safe to call twice."""
        self.learned_writer.close()  # first: its batches would only fail against the table going away
        self.queue.remove()
        for remove in (self.nft.delete_table, lambda: self.nft.run(teardown_script())):
            try:
                remove()
            except NftError as exc:
                log.warning("event=teardown_nft_failed error=%r", str(exc))
        if plan is not None:
            self.links.remove_routes(plan.link_routes)
            self.tc.remove([tree.interface for tree in plan.tc_trees])
