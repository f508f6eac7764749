"""Install the NFQUEUE hand-off: native nft `queue` if the kernel has it, else iptables-nft.

Both live in objects gatewayd owns: the nft table `inet gatewayd_queue`, or
the iptables chain GATEWAYD_QUEUE plus one jump at the top of FORWARD.
Nothing else in the iptables tables is flushed or changed; the filter tables
and chains iptables-nft had to create for it go at stop (iptables_tables.py).
"""

from __future__ import annotations

import logging
import subprocess

from gatewayd.apply.iptables_tables import (
    FAMILY_OF_BINARY,
    FilterTableState,
    cleanup_script,
    filter_table_state,
    list_filter_table,
)
from gatewayd.apply.nft import NftError, NftKernel
from gatewayd.compile.kernel_names import QUEUE_IPTABLES_CHAIN as IPTABLES_CHAIN
from gatewayd.compile.kernel_names import TABLE_FAMILY
from gatewayd.compile.queue_rule import QueueRule

log = logging.getLogger("gatewayd.queue")

QUEUE_TABLE = "gatewayd_queue"
QUEUE_PRIORITY = 0  # between classify (-150) and enforce (+10)
IPTABLES_BINARIES = ("iptables-nft", "ip6tables-nft")
# FORWARD: office flows; OUTPUT: answers of a DNS resolver running on the router itself.
HOOKED_CHAINS = ("FORWARD", "OUTPUT")


class QueueRuleError(RuntimeError):
    pass


class QueueInstaller:
    def __init__(self, kernel: NftKernel, native_queue: bool) -> None:
        """`native_queue`: the kernel has nft's `queue` statement (apply/features.py probes it)."""
        self._kernel = kernel
        self._native = native_queue
        self.installed: QueueRule | None = None
        # Each filter table as it was before gatewayd's first iptables call, by family.
        self._filter_tables_before: dict[str, FilterTableState] = {}

    @property
    def backend(self) -> str:
        return "nft" if self._native else "iptables-nft"

    def install(self, rule: QueueRule) -> None:
        if rule == self.installed:
            return
        if self._native:
            chains = " ".join(f"chain {hook} {{ type filter hook {hook} priority {QUEUE_PRIORITY}; "
                              f"{rule.nft_statement()}; }}" for hook in ("forward", "output"))
            self._kernel.run(
                f"table {TABLE_FAMILY} {QUEUE_TABLE}\ndelete table {TABLE_FAMILY} {QUEUE_TABLE}\n"
                f"table {TABLE_FAMILY} {QUEUE_TABLE} {{ {chains} }}\n")
        else:
            for binary in IPTABLES_BINARIES:
                family = FAMILY_OF_BINARY[binary]
                if family not in self._filter_tables_before:
                    self._filter_tables_before[family] = filter_table_state(list_filter_table(self._kernel, family))
                self._iptables_restore(binary, rule.iptables_restore())
                for hooked in HOOKED_CHAINS:
                    if not self._iptables_ok(binary, ["-C", hooked, "-j", IPTABLES_CHAIN]):
                        self._iptables(binary, ["-I", hooked, "1", "-j", IPTABLES_CHAIN])
        self.installed = rule

    def remove(self) -> None:
        try:
            self._kernel.run(f"table {TABLE_FAMILY} {QUEUE_TABLE}\ndelete table {TABLE_FAMILY} {QUEUE_TABLE}\n")
        except NftError:
            pass
        for binary in IPTABLES_BINARIES:
            for hooked in HOOKED_CHAINS:
                while self._iptables_ok(binary, ["-D", hooked, "-j", IPTABLES_CHAIN]):
                    pass
            self._iptables_ok(binary, ["-F", IPTABLES_CHAIN])
            self._iptables_ok(binary, ["-X", IPTABLES_CHAIN])
        self._remove_created_filter_chains()
        self.installed = None

    def _remove_created_filter_chains(self) -> None:
        for family, before in self._filter_tables_before.items():
            script = cleanup_script(family, before, list_filter_table(self._kernel, family),
                                    (*HOOKED_CHAINS, IPTABLES_CHAIN))
            if not script:
                continue
            try:
                self._kernel.run(script)
            except NftError as exc:
                log.warning("event=filter_table_cleanup_failed family=%s error=%r", family, str(exc))

    @staticmethod
    def _iptables_restore(binary: str, text: str) -> None:
        result = subprocess.run([f"{binary}-restore", "--noflush"], input=text, text=True,
                                capture_output=True, timeout=30)
        if result.returncode != 0:
            raise QueueRuleError(f"{binary}-restore: {result.stderr.strip()}")

    @staticmethod
    def _iptables(binary: str, args: list[str]) -> None:
        result = subprocess.run([binary, "-w", *args], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise QueueRuleError(f"{binary} {' '.join(args)}: {result.stderr.strip()}")

    @staticmethod
    def _iptables_ok(binary: str, args: list[str]) -> bool:
        return subprocess.run([binary, "-w", *args], capture_output=True, timeout=30).returncode == 0
