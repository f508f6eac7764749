"""The items of a composed YAML list, kept as positions in the source text until they are read.

A 100,000-domain blocklist is one list of 100,000 plain scalars. As nodes
(even compact ones, yamlnodes.CompactScalarNode) with their texts they cost
about 220 bytes each while the policy is read, as many small objects mixed in
with what the daemon keeps: freed, their memory could not all go back to the
system. A plain single-line scalar whose text is exactly its source, and
whose tag resolves to a string, is kept here as four integers in arrays and
a None in a list (40 bytes, no Python object of its own); its node is made each time the item is
read, with the same tag, value, style and marks PyYAML gives it. Every other
item (quoted, numbers, anchored, aliases, mappings, ...) stays a real node.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload

from yaml.events import ScalarEvent
from yaml.nodes import Node

from gatewayd.policy.yamlnodes import CompactScalarNode, packed_position

STR_TAG = "tag:yaml.org,2002:str"


class ScalarItems(Sequence[Node]):
    """A list's items for readers: a Sequence of nodes, most of them made on demand."""

    def __init__(self, source: str, plain_style: str | None) -> None:
        self._source = source
        self._plain_style = plain_style  # what the parser calls a plain scalar's style: None, or libyaml's ''
        self._nodes: list[Node | None] = []  # None: the item is kept in the arrays below
        self._starts = array("q")  # index in the source of each kept item's first and last + 1 character
        self._ends = array("q")
        self._positions = array("Q")  # its start line and column, packed (yamlnodes.packed_position)
        self._kept_at: array[int] = array("q")  # index in _nodes -> index in the arrays, -1 for real nodes

    def keep_if_plain(self, event: ScalarEvent, tag: str) -> bool:
        """Keep the item as positions when that loses nothing; False when it needs a real node."""
        if tag != STR_TAG or event.anchor is not None or event.style != self._plain_style:
            return False
        start, end = event.start_mark, event.end_mark
        if start is None or end is None or start.line != end.line or self._source[start.index:end.index] != event.value:
            return False
        self._kept_at.append(len(self._starts))
        self._nodes.append(None)
        self._starts.append(start.index)
        self._ends.append(end.index)
        self._positions.append(packed_position(start))
        return True

    def append(self, node: Node) -> None:
        self._kept_at.append(-1)
        self._nodes.append(node)

    def __len__(self) -> int:
        return len(self._nodes)

    @overload
    def __getitem__(self, index: int) -> Node: ...

    @overload
    def __getitem__(self, index: slice) -> list[Node]: ...

    def __getitem__(self, index: int | slice) -> Node | list[Node]:
        if isinstance(index, slice):
            return [self._node(position) for position in range(len(self._nodes))[index]]
        return self._node(range(len(self._nodes))[index])  # negative indexes and IndexError as a list has them

    def __iter__(self) -> Iterator[Node]:
        for position in range(len(self._nodes)):
            yield self._node(position)

    def _node(self, position: int) -> Node:
        node = self._nodes[position]
        if node is not None:
            return node
        kept = self._kept_at[position]
        start, end = self._starts[kept], self._ends[kept]
        where = self._positions[kept]
        return CompactScalarNode.on_one_line(STR_TAG, self._source[start:end], where, end - start, self._plain_style)

    def __repr__(self) -> str:
        return f"ScalarItems({len(self)} items, {len(self._starts)} kept as positions)"
