"""Reading a big policy holds few copies of it (issue 14, section 3: peak RSS of a big reload).

The YAML node tree of a 100,000-domain blocklist was the largest thing in the
daemon while it reloaded. These tests pin what the tree costs per list entry
and what reading a big policy costs at its peak, measured with tracemalloc
(Python's own allocations: the same on every machine), and that the compact
nodes say exactly what PyYAML's own nodes say.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gatewayd.classify.domains import DomainMatcher
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.big_policy import big_policy
from gatewayd.policy.loader import load_policy_text
from gatewayd.policy.yamlcompose import compose_counted

ENTRIES = 20_000
# PyYAML's ScalarNode with its two Marks made the tree ~380 bytes an entry (with the entry's share
# of the text); with the entries kept as positions in the text, ~70.
MAX_TREE_BYTES_PER_ENTRY = 120
# Reading the big policy peaked at ~460 bytes a domain more than a small one (the tree, and a
# (node, text) pair for every entry of the list at once); now ~90.
MAX_READ_PEAK_BYTES_PER_DOMAIN = 150
# Reading it again beside the running one, it reuses the running policy's domain strings: ~30.
MAX_REREAD_PEAK_BYTES_PER_DOMAIN = 50

MIXED = """\
plain: value
quoted: "two words"
single: 'it''s'
number: 42
empty:
list: [a, "b c", 3]
block:
  - first
  - second one
literal: |
  line one
  line two
folded: >
  folded
  text
anchored: &name shared
alias: *name
mixed:
  - plain.example.com
  - 80
  - "quoted.example.com"
  - ~
  - true
  - 天气.example.cn
  - &item anchored.example.com
  - *item
  - {name: inside}
  - [nested, list]
  - a plain scalar
    on two lines
  - 2001:db8::1
"""


def scalars(node: Node | None) -> Iterator[ScalarNode]:
    if isinstance(node, ScalarNode):
        yield node
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from scalars(item)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield from scalars(key)
            yield from scalars(value)


def described(node: ScalarNode) -> tuple[Any, ...]:
    return (node.tag, node.value, node.style, node.start_mark.line, node.start_mark.column,
            node.end_mark.line, node.end_mark.column)


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        result = work()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak


def test_compact_scalars_say_what_pyyamls_own_nodes_say() -> None:
    for fast, loader in ((True, yaml.CSafeLoader), (False, yaml.SafeLoader)):  # libyaml's plain style is ''
        ours = [described(node) for node in scalars(compose_counted(MIXED, fast=fast))]
        theirs = [described(node) for node in scalars(yaml.compose(MIXED, Loader=loader))]
        assert ours == theirs
        assert len(ours) == 40  # 12 keys, 28 values (an alias is one too)


# List items as an admin might write them: names, addresses, numbers, quotes, comments, non-ASCII.
ITEM_TEXT = st.text(alphabet=st.sampled_from(list("abz09.-_*=:/ #'\"[]{},&!|>~天é") + ["\t"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(ITEM_TEXT, max_size=6), st.booleans())
def test_any_list_composes_to_what_pyyaml_composes(items: list[str], fast: bool) -> None:
    text = "list:\n" + "".join(f"  - {item}\n" for item in items)
    loader = yaml.CSafeLoader if fast else yaml.SafeLoader
    try:
        theirs: list[tuple[Any, ...]] | None = [described(n) for n in scalars(yaml.compose(text, Loader=loader))]
    except yaml.YAMLError:
        theirs = None
    try:
        ours: list[tuple[Any, ...]] | None = [described(n) for n in scalars(compose_counted(text, fast=fast))]
    except yaml.YAMLError:
        ours = None
    assert ours == theirs


def test_list_items_kept_as_positions_read_like_a_list() -> None:
    root = compose_counted("- a.example.com\n- 80\n- b.example.com\n- c.example.com\n", fast=True)
    assert isinstance(root, SequenceNode)
    items = root.value
    assert len(items) == 4
    assert [item.value for item in items] == ["a.example.com", "80", "b.example.com", "c.example.com"]
    assert items[-1].value == "c.example.com" and items[-1].start_mark.line == 3
    assert [item.value for item in items[1:3]] == ["80", "b.example.com"]
    assert items[1].tag == "tag:yaml.org,2002:int"
    with pytest.raises(IndexError):
        items[4]


def test_a_long_list_composes_to_a_compact_tree() -> None:
    text = "domains:\n" + "".join(f"  - blocked{number}.example.com\n" for number in range(ENTRIES))
    root = compose_counted(text, fast=True)  # once before measuring: imports and caches are not the tree
    assert isinstance(root, MappingNode)
    del root
    per_entry = peak_bytes(lambda: compose_counted(text, fast=True)) / ENTRIES
    assert per_entry < MAX_TREE_BYTES_PER_ENTRY, f"{per_entry:.0f} bytes an entry"


def test_reading_a_big_blocklist_does_not_hold_extra_copies_of_it() -> None:
    text = big_policy(100, ENTRIES, 0)
    policy = load_policy_text(text, "big.yaml")  # once before measuring: the catalog's caches are not it
    assert len(policy.applications["blocklist"].domains) == ENTRIES
    del policy
    baseline = peak_bytes(lambda: load_policy_text(big_policy(100, 1, 0), "small.yaml"))
    per_domain = (peak_bytes(lambda: load_policy_text(text, "big.yaml")) - baseline) / ENTRIES
    assert per_domain < MAX_READ_PEAK_BYTES_PER_DOMAIN, f"{per_domain:.0f} bytes a domain"


def test_a_reload_reuses_the_running_policys_domain_strings() -> None:
    running = load_policy_text(big_policy(100, ENTRIES, 0), "big.yaml")
    held = ClassifierTables.build(running.applications.values()).domains
    text = big_policy(100, ENTRIES, 1)
    reloaded = load_policy_text(text, "big.yaml", held_domains=held)
    old, new = running.applications["blocklist"].domains, reloaded.applications["blocklist"].domains
    assert new == old
    assert all(new_domain is old_domain for new_domain, old_domain in zip(new, old, strict=True))
    baseline = peak_bytes(lambda: load_policy_text(big_policy(100, 1, 1), "small.yaml", held_domains=held))
    per_domain = (peak_bytes(lambda: load_policy_text(text, "big.yaml", held_domains=held)) - baseline) / ENTRIES
    assert per_domain < MAX_REREAD_PEAK_BYTES_PER_DOMAIN, f"{per_domain:.0f} bytes a domain"


def test_held_gives_the_registered_string_of_the_same_pattern_only() -> None:
    plain, below, exact = "example.com", "*.sub.example.org", "=only.example.net"
    matcher = DomainMatcher([(plain, "a"), (below, "b"), (exact, "c")])
    assert matcher.held("".join(["example", ".com"])) is plain
    assert matcher.held("".join(["*.sub", ".example.org"])) is below
    assert matcher.held("".join(["=only", ".example.net"])) is exact
    assert matcher.held("=example.com") is None  # registered as "example.com": another pattern
    assert matcher.held("*.example.com") is None
    assert matcher.held("sub.example.org") is None
    assert matcher.held("other.example.com") is None
