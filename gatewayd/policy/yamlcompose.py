"""Composing YAML to nodes within a node budget, aliases counted as everything they repeat.

PyYAML composes an alias as the anchored node itself, shared: a 1 KB file of
nested aliases (billion laughs, fanned-out merge keys) is a small graph that
every reader walking it sees as billions of nodes. So the composer counts each
node it makes, and each alias as the whole expanded size of its anchor, and
stops at the alias or node that passes MAX_YAML_NODES. Counting while
composing also bounds memory: a file is refused before its nodes fill it.

libyaml's parser makes the events (the slow part in Python); the composer on
top is PyYAML's own, with the count added. The pure-Python parser is kept for
its more precise syntax error messages.

Scalars are composed to compact nodes (yamlnodes.py), and the plain string
items of a list to positions in the text (yamlitems.py): a 100,000-domain
blocklist is 100,000 scalars, and as PyYAML's nodes they were the largest
thing in the daemon while a big policy reloads.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, ScalarEvent, SequenceEndEvent
from yaml.nodes import Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from gatewayd.policy.limits import MAX_YAML_NODES
from gatewayd.policy.yamlitems import ScalarItems
from gatewayd.policy.yamlnodes import CompactScalarNode

_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)


class NodeLimitError(Exception):
    """The file composes to more nodes than allowed; line and column are 1-based."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


class CountingComposer(Composer):
    """PyYAML's composer, counting nodes with every alias expanded."""

    node_limit = MAX_YAML_NODES
    plain_style: str | None = None  # the style the parser gives plain scalars

    def __init__(self, text: str) -> None:
        Composer.__init__(self)
        self.text = text  # what the marks' indexes point into, for ScalarItems
        self.nodes_composed = 0
        self.expanded_sizes: dict[str, int] = {}  # anchor -> nodes an alias to it stands for

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser half of the loader has it
        if isinstance(event, AliasEvent):
            if event.anchor in self.anchors:  # an undefined alias is PyYAML's own error
                self._count_alias(event)
            return super().compose_node(parent, index)
        self._spend_one(event.start_mark)
        before = self.nodes_composed
        node = super().compose_node(parent, index)
        if event.anchor is not None:
            self.expanded_sizes[event.anchor] = self.nodes_composed - before + 1
        return node

    def compose_scalar_node(self, anchor: Any) -> ScalarNode:  # `anchor` is the anchor's name, or None
        """PyYAML's own, making a CompactScalarNode."""
        event = self.get_event()  # type: ignore[attr-defined]  # the parser half of the loader has it
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(ScalarNode, event.value, event.implicit)  # type: ignore[attr-defined]
        node = CompactScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node

    def compose_sequence_node(self, anchor: Any) -> SequenceNode:
        """PyYAML's own, with the items in ScalarItems: plain strings kept as their positions."""
        start_event = self.get_event()  # type: ignore[attr-defined]
        tag = start_event.tag
        if tag is None or tag == "!":
            tag = self.resolve(SequenceNode, None, start_event.implicit)  # type: ignore[attr-defined]
        items = ScalarItems(self.text, self.plain_style)
        node = SequenceNode(tag, items, start_event.start_mark, None, flow_style=start_event.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        index = 0
        while not self.check_event(SequenceEndEvent):  # type: ignore[attr-defined]
            event = self.peek_event()  # type: ignore[attr-defined]
            if isinstance(event, ScalarEvent) and event.tag in (None, "!") and event.implicit[0]:
                tag = self.resolve(ScalarNode, event.value, event.implicit)  # type: ignore[attr-defined]
                if items.keep_if_plain(event, tag):
                    self._spend_one(event.start_mark)
                    self.get_event()  # type: ignore[attr-defined]
                    index += 1
                    continue
            item = self.compose_node(node, index)
            assert item is not None  # only an empty document composes to None
            items.append(item)
            index += 1
        node.end_mark = self.get_event().end_mark  # type: ignore[attr-defined]
        return node

    def _spend_one(self, mark: Any) -> None:
        """_spend for one node, its message made only when it is needed (this runs for every node)."""
        self.nodes_composed += 1
        if self.nodes_composed > self.node_limit:
            raise NodeLimitError(_line(mark), _column(mark), f"the file has more than {self.node_limit:,} YAML "
                                                             f"nodes; the limit is {self.node_limit:,}")

    def _count_alias(self, event: AliasEvent) -> None:
        size = self.expanded_sizes.get(event.anchor or "")
        if size is None:  # the anchored node is still being composed: the alias is inside it
            raise NodeLimitError(_line(event.start_mark), _column(event.start_mark),
                                 f"alias '*{event.anchor}' is inside the node it refers to "
                                 "(a recursive structure has no end)")
        total = self.nodes_composed + size
        self._spend(size, event.start_mark,
                    f"alias '*{event.anchor}' repeats {size:,} YAML nodes, which brings the file to "
                    f"{total:,}; the limit is {self.node_limit:,} (an alias counts as every node it repeats)")

    def _spend(self, nodes: int, mark: Any, message: str) -> None:
        self.nodes_composed += nodes
        if self.nodes_composed > self.node_limit:
            raise NodeLimitError(_line(mark), _column(mark), message)


def _line(mark: Any) -> int:
    return int(mark.line) + 1 if mark is not None else 1


def _column(mark: Any) -> int:
    return int(mark.column) + 1 if mark is not None else 1


class _PreciseComposer(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, CountingComposer, Resolver):
    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        CountingComposer.__init__(self, text)
        Resolver.__init__(self)


_FastComposer: Any = None
if _CParser is not None:
    class _LibyamlComposer(CountingComposer, _CParser, Resolver):  # type: ignore[misc]
        """libyaml's events, PyYAML's composer (listed first, so its get_single_node is the one used)."""

        plain_style = ""  # libyaml's style of a plain scalar; the pure-Python parser's is None

        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            CountingComposer.__init__(self, text)
            Resolver.__init__(self)

    _FastComposer = _LibyamlComposer


def compose_counted(text: str, fast: bool) -> Node | None:
    """The document's root node (None for an empty one); raises yaml.YAMLError or NodeLimitError.

    `fast` parses with libyaml when PyYAML has it; False is the pure-Python parser.
    """
    composer: Any = _FastComposer(text) if fast and _FastComposer is not None else _PreciseComposer(text)
    try:
        root: Node | None = composer.get_single_node()
        return root
    finally:
        dispose = getattr(composer, "dispose", None)
        if dispose is not None:
            dispose()
