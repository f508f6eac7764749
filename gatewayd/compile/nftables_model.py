"""A small data model of one nft table, rendered to nft's own syntax.

Builders return these objects; only apply/ sends them to the kernel. The text
form is what `gatewayd render` prints and what `nft -f` would accept, so an
admin can read exactly what will be loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def quote(text: str) -> str:
    return '"' + text.replace("\\", "").replace('"', "'") + '"'


@dataclass(frozen=True)
class NftSet:
    """A named set or map. `data_type` makes it a map (e.g. "verdict", "classid")."""

    name: str
    key_type: str
    data_type: str | None = None
    flags: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()
    size: int | None = None
    counter: bool = False
    comment: str = ""
    timeout: int | None = None  # seconds; default element timeout of a dynamic set

    def render(self) -> list[str]:
        kind = "map" if self.data_type else "set"
        lines = [f"\t{kind} {self.name} {{"]
        type_line = f"type {self.key_type}" + (f" : {self.data_type}" if self.data_type else "")
        lines.append(f"\t\t{type_line}")
        if self.flags:
            lines.append(f"\t\tflags {','.join(self.flags)}")
        if self.size:
            lines.append(f"\t\tsize {self.size}")
        if self.timeout:
            lines.append(f"\t\ttimeout {self.timeout}s")
        if self.counter:
            lines.append("\t\tcounter")
        if self.comment:
            lines.append(f"\t\tcomment {quote(self.comment)}")
        if self.elements:
            lines.append("\t\telements = {")
            lines.extend(f"\t\t\t{e}," for e in self.elements)
            lines.append("\t\t}")
        lines.append("\t}")
        return lines


@dataclass(frozen=True)
class NftRule:
    statement: str
    comment: str = ""

    def render(self) -> str:
        if self.comment:
            return f"\t\t{self.statement} comment {quote(self.comment)}"
        return f"\t\t{self.statement}"


@dataclass(frozen=True)
class BaseHook:
    hook: str
    priority: int
    policy: str = "accept"
    devices: tuple[str, ...] = ()  # netdev ingress chains only
    kind: str = "filter"  # or "nat" (compile/links.py: masquerade per WAN link)


@dataclass(frozen=True)
class NftChain:
    name: str
    rules: tuple[NftRule, ...]
    base: BaseHook | None = None
    comment: str = ""

    def render(self) -> list[str]:
        lines = [f"\tchain {self.name} {{"]
        if self.comment:
            lines.append(f"\t\tcomment {quote(self.comment)}")
        if self.base:
            devices = f" devices = {{ {', '.join(self.base.devices)} }}" if self.base.devices else ""
            lines.append(
                f"\t\ttype {self.base.kind} hook {self.base.hook}{devices} priority {self.base.priority}; "
                f"policy {self.base.policy};"
            )
        lines.extend(rule.render() for rule in self.rules)
        lines.append("\t}")
        return lines


@dataclass(frozen=True)
class NftTable:
    family: str
    name: str
    counters: tuple[str, ...] = ()
    sets: tuple[NftSet, ...] = ()
    chains: tuple[NftChain, ...] = ()
    comment: str = ""

    def render(self) -> str:
        lines = [f"table {self.family} {self.name} {{"]
        if self.comment:
            lines.append(f"\tcomment {quote(self.comment)}")
        for counter in self.counters:
            lines.append(f"\tcounter {counter} {{ }}")
        for nft_set in self.sets:
            lines.extend(nft_set.render())
        for chain in self.chains:
            lines.extend(chain.render())
        lines.append("}")
        return "\n".join(lines) + "\n"

    def replace_script(self, extra_elements: tuple[str, ...] = ()) -> str:
        """The one transaction that swaps this table in: create-if-missing, delete, define.

        Declaring the table first makes the delete safe on a first start; nft
        applies the whole script or nothing. `extra_elements` are
        `add element` commands that carry state over (learned addresses).
        """
        head = f"table {self.family} {self.name}\ndelete table {self.family} {self.name}\n"
        return head + self.render() + "".join(line + "\n" for line in extra_elements)

    def chain(self, name: str) -> NftChain:
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise KeyError(name)


@dataclass
class TableBuilder:
    """Accumulates the parts of a table while the compiler walks the policy."""

    family: str
    name: str
    counters: list[str] = field(default_factory=list)
    sets: list[NftSet] = field(default_factory=list)
    chains: list[NftChain] = field(default_factory=list)

    def build(self, comment: str = "") -> NftTable:
        return NftTable(self.family, self.name, tuple(self.counters), tuple(self.sets),
                        tuple(self.chains), comment)
