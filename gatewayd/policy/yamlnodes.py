"""A ScalarNode at a fraction of PyYAML's memory, for policies of 100,000 list entries.

PyYAML's ScalarNode keeps an instance dict and two Mark objects: with its text
about 350 bytes a scalar, which made the node tree the largest thing in the
daemon while a big policy reloads. CompactScalarNode keeps only what the
readers use (tag, value, style, and start and end line and column packed in
one integer) in slots, and makes a Mark when one is asked for.
"""

from __future__ import annotations

from typing import Any

from yaml.error import Mark
from yaml.nodes import ScalarNode

POSITION_BITS = 32  # a 0-based line or column (a policy file is far below 4 GiB: limits.py)
_POSITION_MASK = (1 << POSITION_BITS) - 1
_MARK_NAME = "<unicode string>"  # what libyaml names the marks of a str it parsed


def packed_position(mark: Any) -> int:
    """A mark's line and column in one integer below 2**64."""
    line: int = mark.line
    column: int = mark.column
    return (line << POSITION_BITS) | column


def _mark(packed: int) -> Mark:
    return Mark(_MARK_NAME, 0, packed >> POSITION_BITS, packed & _POSITION_MASK, None, 0)  # no buffer: no snippet


class CompactScalarNode(ScalarNode):
    """Slots instead of an instance dict, and both marks packed into one integer."""

    __slots__ = ("tag", "value", "style", "_span")

    def __init__(self, tag: str, value: str, start_mark: Any, end_mark: Any, style: str | None = None) -> None:
        # ScalarNode.__init__ is not called: it would store the marks themselves.
        self.tag = tag
        self.value = value
        self.style = style
        self._span = (packed_position(start_mark) << (2 * POSITION_BITS)) | packed_position(end_mark)

    @classmethod
    def on_one_line(cls, tag: str, value: str, start: int, width: int, style: str | None) -> CompactScalarNode:
        """A scalar written on one line from the packed position `start`, `width` characters long."""
        node = cls.__new__(cls)
        node.tag = tag
        node.value = value
        node.style = style
        node._span = (start << (2 * POSITION_BITS)) | (start + width)
        return node

    @property
    def start_mark(self) -> Mark:  # type: ignore[override]  # read-only here: a scalar's marks never change
        return _mark(self._span >> (2 * POSITION_BITS))

    @property
    def end_mark(self) -> Mark:  # type: ignore[override]
        return _mark(self._span & ((1 << (2 * POSITION_BITS)) - 1))
