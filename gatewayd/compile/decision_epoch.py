"""Rules once per flow and epoch: a decided flow's packets skip the policy rules.

Where the cycles of a decided flow went (inet gatewayd, office.yaml, one established TCP
packet of the original direction): classify returns at its third rule, then enforce ran
`jump rules` -> the `rules_by_app` vmap -> a `rules_for_apps_N` chain of two to seven rules,
most with a set lookup on the source, until one set the class it already had. The verdict
cannot change between two packets of a flow unless the rules change (a reload) or the clock
crosses a schedule boundary; so the result is kept per flow, tagged with an *epoch* the
daemon advances at exactly those moments:

    enforce: ct direction original jump decided_flows
    decided_flows:
        ct label EPOCH ct mark & BLOCK == 0 return    decided in this epoch: rules skipped
        ct mark & APP != 0 ct label set EPOCH          decided: what the rules say holds all epoch
        goto rules

The tag is a conntrack label bit (compile/marks.py: the ct mark has no bit to spare, and a
label bit costs the flow nothing it did not have). Blocked flows never take the shortcut, so
every packet of theirs still gets its reset or drop from `do_block` as before, and undecided
flows (app 0) are not tagged, so the rules run again when the classifier decides them.

Advancing the epoch rewrites `decided_flows` alone (one small nft transaction): from the next
packet on, every open flow runs the rules once more. nft can set label bits but never clear
them, so the epochs cycle through EPOCH_LABELS bits and an epoch's bit is cleared from every
flow before it is used again (apply/epoch_labels.py).

Not nft flowtables: a flowtable hands established flows to the ingress fast path before the
forward hook, so neither the enforce chain (skb priority -> HTB class, per-app accounting,
the blocked-replies drop) nor a schedule or reload would see their packets again; classes and
usage metrics are the point of gatewayd.
"""

from __future__ import annotations

from dataclasses import replace

from gatewayd.compile import marks
from gatewayd.compile.kernel_names import DECIDED_FLOWS_CHAIN
from gatewayd.compile.nftables_model import NftChain, NftRule, NftTable
from gatewayd.compile.rule_dispatch import RULES_CHAIN


def epoch_label(epoch: int) -> int:
    """The ct label bit that tags flows decided in `epoch`."""
    if epoch < 0:
        raise ValueError(f"epoch {epoch} is negative")
    return marks.FIRST_EPOCH_LABEL + epoch % marks.EPOCH_LABELS


def decided_flows_chain(epoch: int) -> NftChain:
    label = epoch_label(epoch)
    return NftChain(DECIDED_FLOWS_CHAIN, (
        NftRule(f"ct label {label} ct mark & 0x{marks.BLOCK_BIT:08x} == 0 return",
                comment="decided in this epoch: the rules would say the same"),
        NftRule(f"ct mark & 0x{marks.APP_MASK:08x} != 0 ct label set {label}",
                comment="decided: the rules below hold for the rest of the epoch"),
        NftRule(f"goto {RULES_CHAIN}"),
    ), comment=f"epoch {epoch}: original-direction packets, before the policy rules")


def with_epoch(table: NftTable, epoch: int) -> NftTable:
    """`table` with its decided_flows chain for `epoch` (plans are compiled for epoch 0)."""
    chains = tuple(decided_flows_chain(epoch) if chain.name == DECIDED_FLOWS_CHAIN else chain
                   for chain in table.chains)
    return replace(table, chains=chains)


def advance_script(table: NftTable, epoch: int) -> str:
    """The one transaction that moves a running table to `epoch`: its decided_flows chain, refilled."""
    chain = decided_flows_chain(epoch)
    lines = [f"flush chain {table.family} {table.name} {chain.name}"]
    lines += [f"add rule {table.family} {table.name} {chain.name} {rule.render().strip()}" for rule in chain.rules]
    return "\n".join(lines) + "\n"
