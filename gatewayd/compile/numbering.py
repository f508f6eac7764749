"""Numbers that the kernel sees in place of names: apps, groups, classes, WAN links."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.compile import marks
from gatewayd.policy.model import Policy

UNKNOWN_APP = "unknown"
NO_GROUP = "(none)"


@dataclass(frozen=True)
class Numbering:
    apps: marks.NumberAllocation
    groups: marks.NumberAllocation
    classes: dict[str, int]  # class name -> class index (1-based, file order)
    # WAN link name -> number in the ct mark; kept across reloads like apps, so a reordered
    # `links` section does not move open connections to another line.
    links: marks.NumberAllocation = field(default_factory=lambda: marks.NumberAllocation({}))

    @staticmethod
    def for_policy(policy: Policy, previous: Numbering | None = None) -> Numbering:
        app_names = sorted(a for a in policy.applications if a != UNKNOWN_APP)
        apps = marks.NumberAllocation.allocate(
            app_names, marks.FIRST_APP_NUMBER, marks.MAX_APP_NUMBER,
            previous.apps if previous else None)
        apps.numbers[UNKNOWN_APP] = marks.APP_UNKNOWN
        groups = marks.NumberAllocation.allocate(
            list(policy.groups), marks.FIRST_GROUP_NUMBER, marks.MAX_GROUP_NUMBER,
            previous.groups if previous else None)
        groups.numbers[NO_GROUP] = marks.GROUP_NONE
        classes = {name: index for index, name in enumerate(policy.classes, start=1)}
        links = marks.NumberAllocation.allocate(
            [link.name for link in policy.links], marks.FIRST_LINK_NUMBER, marks.MAX_LINK_NUMBER,
            previous.links if previous else None)
        return Numbering(apps, groups, classes, links)

    def app_name(self, number: int) -> str:
        if number == marks.APP_UNDECIDED:
            return "undecided"
        return self.apps.name_of(number) or f"app-{number}"

    def group_name(self, number: int) -> str:
        return self.groups.name_of(number) or f"group-{number}"

    def class_name(self, index: int) -> str:
        for name, class_index in self.classes.items():
            if class_index == index:
                return name
        return "none"

    def tc_minor(self, class_name: str) -> int:
        return marks.TC_MINOR_BASE + self.classes[class_name]
