"""The CPU scheduling systemd/gatewayd.service gives the daemon, as a command prefix
(`chrt`, `nice`), so the lab can run the daemon as systemd on a real box starts it.

The lab has no systemd: the benchmarks start the daemon themselves, and without this
they would measure a daemon scheduled as no installed one is.
"""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "gatewayd.service"
_CHRT_POLICIES = {"other": "--other", "batch": "--batch", "idle": "--idle", "fifo": "--fifo", "rr": "--rr"}
_TRUE = frozenset({"yes", "true", "on", "1"})


class UnitSchedulingError(ValueError):
    pass


def service_settings(text: str) -> dict[str, str]:
    """key=value lines of the unit's [Service] section (comments and other sections skipped)."""
    settings: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def scheduling_prefix(text: str) -> tuple[str, ...]:
    """The argv prefix that gives a command the scheduling the unit `text` asks for; () for none."""
    settings = service_settings(text)
    prefix: tuple[str, ...] = ()
    if "Nice" in settings:
        prefix += ("nice", "-n", str(int(settings["Nice"])))
    policy = settings.get("CPUSchedulingPolicy")
    if policy is None:
        return prefix
    if policy not in _CHRT_POLICIES:
        raise UnitSchedulingError(f"CPUSchedulingPolicy={policy} is not one systemd knows")
    real_time = policy in ("fifo", "rr")
    if real_time and "CPUSchedulingPriority" not in settings:
        raise UnitSchedulingError(f"CPUSchedulingPolicy={policy} without CPUSchedulingPriority")
    priority = int(settings.get("CPUSchedulingPriority", "0")) if real_time else 0
    if real_time and not 1 <= priority <= 99:
        raise UnitSchedulingError(f"CPUSchedulingPriority={priority} is outside 1..99")
    prefix += ("chrt", _CHRT_POLICIES[policy])
    if settings.get("CPUSchedulingResetOnFork", "no").lower() in _TRUE:
        prefix += ("--reset-on-fork",)
    return (*prefix, str(priority))


def unit_scheduling_prefix(unit: Path = UNIT) -> tuple[str, ...]:
    return scheduling_prefix(unit.read_text())
