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


def same_hook(present: BaseHook, wanted: BaseHook | None) -> bool:
    """Whether a base chain in the kernel can stay for `wanted`: same hook, priority and devices
    (a chain's policy can be changed in place, its hook cannot)."""
    return wanted is not None and (present.hook, present.priority, set(present.devices)) == (
        wanted.hook, wanted.priority, set(wanted.devices))


@dataclass(frozen=True)
class KernelObjects:
    """The named objects of one table the kernel holds now (read by apply/nft.py), for `swap_script`."""

    sets: dict[str, str] = field(default_factory=dict)  # name -> "set" or "map"
    counters: tuple[str, ...] = ()
    chains: dict[str, BaseHook | None] = field(default_factory=dict)  # None: a regular chain


@dataclass(frozen=True)
class NftTable:
    family: str
    name: str
    counters: tuple[str, ...] = ()
    sets: tuple[NftSet, ...] = ()
    chains: tuple[NftChain, ...] = ()
    comment: str = ""
    # Sets and counters whose kernel state a swap keeps when the kernel holds them: their names
    # carry everything their definition depends on, so the same name is the same object.
    kept: tuple[str, ...] = ()

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

    def swap_script(self, present: KernelObjects, extra_elements: tuple[str, ...] = ()) -> str:
        """The one transaction that swaps this table in while keeping its hooks: flush, delete, define.

        Deleting the table unregisters its base chains' hooks, and the kernel
        drops every packet still waiting in NFQUEUE for a verdict from one of
        them (a DNS answer, a first packet: lost on every reload). So the table
        and its base chains stay: `flush table` removes every rule, the sets,
        maps, counters and regular chains the kernel holds (`present`) are
        deleted, then the table is defined again; a base chain whose hook and
        priority did not change is only refilled. The sets and counters in
        `kept` are not deleted: declaring them again keeps their elements and
        values (a connection cap's ct counts, which no `add element` can
        recreate, and its refusals). Packets see the old rules or
        the new ones, never none. The table's comment stays the first one's:
        the kernel cannot update it.
        """
        family, name = self.family, self.name
        kept = set(self.kept)
        lines = [f"table {family} {name}", f"flush table {family} {name}"]
        lines += [f"delete {kind} {family} {name} {set_name}" for set_name, kind in sorted(present.sets.items())
                  if set_name not in kept]
        lines += [f"delete counter {family} {name} {counter}" for counter in sorted(present.counters)
                  if counter not in kept]
        wanted_hooks = {chain.name: chain.base for chain in self.chains if chain.base}
        lines += [f"delete chain {family} {name} {chain}" for chain, hook in sorted(present.chains.items())
                  if hook is None or not same_hook(hook, wanted_hooks.get(chain))]
        return "\n".join(lines) + "\n" + self.render() + "".join(line + "\n" for line in extra_elements)

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
    kept: list[str] = field(default_factory=list)

    def build(self, comment: str = "") -> NftTable:
        return NftTable(self.family, self.name, tuple(self.counters), tuple(self.sets),
                        tuple(self.chains), comment, tuple(self.kept))
