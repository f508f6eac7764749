"""The policy rules as the kernel runs them: one map lookup on the flow's app, then only the rules
that can match it.

The rules run on original-direction packets until a flow is decided, then once per rules
epoch (compile/decision_epoch.py), so that a reload or a schedule boundary reaches open flows
at once. Walking the whole list costs a set lookup or two per rule on every
packet of a bulk download; yet most rules name apps, and a flow's app is fixed once decided. So
the `rules` chain starts with a verdict map on the ct mark's app bits that jumps (goto) to a
chain holding, in policy order, the rules naming that app plus the rules naming no app, without
the app match the map has already made. Apps no rule names, and undecided flows (app 0), find no
element and go on in `rules` itself, which holds the rules naming no app. First match wins as
before, every rule keeps its own named counter, and the order within each chain is the policy's.
Apps that need the same rules share one chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.compile import marks
from gatewayd.compile.nftables_model import NftChain, NftRule, NftSet

RULES_CHAIN = "rules"
RULES_BY_APP_MAP = "rules_by_app"
RULES_FOR_APPS_CHAIN_PREFIX = "rules_for_apps_"
BLOCK_ACTION = "goto do_block"  # how a block rule ends (compile/ruleset.py)
RULES_CHAIN_COMMENT = "first match wins; runs on original-direction packets"


@dataclass(frozen=True)
class PolicyRule:
    """One kernel rule of the policy. `apps` are the app numbers it is limited to (None: any app);
    `rule` carries every match but the app match."""

    apps: frozenset[int] | None
    rule: NftRule


@dataclass(frozen=True)
class RuleDispatch:
    chains: tuple[NftChain, ...]  # `rules` first
    sets: tuple[NftSet, ...]


def blockable_apps(policy_rules: list[PolicyRule]) -> frozenset[int] | None:
    """The apps some block rule may apply to (None: any app), whatever its groups and schedule."""
    blocking = [r for r in policy_rules if r.rule.statement.endswith(BLOCK_ACTION)]
    if any(r.apps is None for r in blocking):
        return None
    return frozenset(n for r in blocking for n in r.apps or ())


def compile_rule_dispatch(policy_rules: list[PolicyRule]) -> RuleDispatch:
    """`policy_rules` in policy order, the default last."""
    named_apps = sorted({n for r in policy_rules if r.apps is not None for n in r.apps})
    chain_of_rules: dict[tuple[int, ...], str] = {}  # indices of the rules an app needs -> its chain
    elements = []
    for app in named_apps:
        needed = tuple(i for i, r in enumerate(policy_rules) if r.apps is None or app in r.apps)
        if needed not in chain_of_rules:
            chain_of_rules[needed] = f"{RULES_FOR_APPS_CHAIN_PREFIX}{len(chain_of_rules) + 1}"
        elements.append(f"0x{marks.app_bits(app):08x} : goto {chain_of_rules[needed]}")

    any_app = tuple(r.rule for r in policy_rules if r.apps is None)
    if not elements:
        return RuleDispatch((NftChain(RULES_CHAIN, any_app, comment=RULES_CHAIN_COMMENT),), ())
    dispatch = NftRule(f"ct mark & 0x{marks.APP_MASK:08x} vmap @{RULES_BY_APP_MAP}",
                       comment="rules naming the flow's app, with those naming none")
    chains = [NftChain(RULES_CHAIN, (dispatch, *any_app),
                       comment=RULES_CHAIN_COMMENT + "; here the rules naming no app")]
    for needed, name in chain_of_rules.items():
        chains.append(NftChain(name, tuple(policy_rules[i].rule for i in needed),
                               comment="the policy's rules for the apps mapped here, in order"))
    vmap = NftSet(RULES_BY_APP_MAP, "mark", "verdict", elements=tuple(elements),
                  comment="app bits of the ct mark -> the rules that can match that app")
    return RuleDispatch(tuple(chains), (vmap,))
