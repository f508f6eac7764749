"""JSON Schema (draft 2020-12) of the policy format, for editors and CI linting.

The loader is the real judge (it checks references, ranges and budgets a
schema cannot); the schema gives editors completion and early squiggles.
Built from the loader's own constants so the two cannot drift apart.
Regenerate the committed copy with:
    python3 -m gatewayd.policy.schema > schema/policy.schema.json
"""

from __future__ import annotations

import json
from typing import Any

from gatewayd.policy.applications import APPLICATION_KEYS
from gatewayd.policy.bandwidth import MAX_CONNECTIONS
from gatewayd.policy.fields import (
    DAY_NAMES,
    DAY_SETS,
    HOURS_PATTERN,
    INTERFACE_PATTERN,
    NAME_PATTERN,
    PORT_PATTERN,
    RATE_PATTERN,
    SHARE_PATTERN,
    SIGNATURE_PATTERN,
)
from gatewayd.policy.loader import FAIL_MODES
from gatewayd.policy.model import CATEGORIES
from gatewayd.policy.rules import ACTIONS
from gatewayd.policy.sections import MAX_CLASSES, MAX_GROUPS
from gatewayd.policy.security_schema import security_schema

Schema = dict[str, Any]

SCHEMA_ID = "https://gatewayd.invalid/schema/policy.schema.json"
DAY_RANGE_PATTERN = "^({0})-({0})$".format("|".join(DAY_NAMES))
BANDWIDTH_PATTERN = f"({SHARE_PATTERN})|({RATE_PATTERN})"


def _string(description: str, **constraints: Any) -> Schema:
    return {"type": "string", "description": description, **constraints}


def _one_or_list(item: Schema, description: str) -> Schema:
    return {
        "description": description,
        "anyOf": [item, {"type": "array", "items": item}],
    }


def _named_map(description: str, value: Schema, max_properties: int | None = None) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": value,
    }
    if max_properties is not None:
        schema["maxProperties"] = max_properties
    return schema


def _object(description: str, properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _names(description: str) -> Schema:
    return _one_or_list(_string("A name defined elsewhere in the policy.", pattern=NAME_PATTERN), description)


def interfaces_schema() -> Schema:
    interface = _string("A Linux interface name.", pattern=INTERFACE_PATTERN)
    rate = _string("WAN link rate: a number with bit, kbit, mbit or gbit (SI units).", pattern=RATE_PATTERN)
    return _object(
        "The gateway's interfaces and the WAN link's real speed.",
        {
            "lan": _one_or_list(interface, "Office-side interface, or a list of them."),
            "wan": interface | {"description": "Internet-side interface."},
            "upload": rate | {"description": "WAN egress rate, e.g. 20mbit."},
            "download": rate | {"description": "WAN ingress (LAN egress) rate, e.g. 50mbit."},
        },
        ("lan", "wan", "upload", "download"),
    )


def schedule_schema() -> Schema:
    day = {
        "anyOf": [
            {"enum": [*DAY_NAMES, *DAY_SETS]},
            {"type": "string", "pattern": DAY_RANGE_PATTERN},
        ],
        "description": "mon..sun, a range such as mon-fri, weekdays, weekend or daily.",
    }
    hours = _string('Local time range "HH:MM-HH:MM"; 24:00 may end a range.', pattern=HOURS_PATTERN)
    return _object(
        "When a rule applies.",
        {
            "days": _one_or_list(day, "Days of the week."),
            "hours": _one_or_list(hours, "Time ranges within those days; omit for all day."),
        },
        ("days",),
    )


def group_schema() -> Schema:
    return _object(
        "A department: a set of client hosts.",
        {
            "description": _string("Free text for people."),
            "members": _one_or_list(
                _string("IPv4/IPv6 network (no host bits), address, range a-b, or MAC."),
                "The group's hosts.",
            ),
            "bandwidth": _rates_schema("Guarantee and ceiling shared by the whole group; its classes split it."),
            "per_host": _rates_schema("Each host's own minimum and maximum (one queue per address)."),
            "exceptions": {
                "type": "object",
                "description": "Hosts (by address) whose per-host rates differ.",
                "additionalProperties": _rates_schema("This host's rates; what is left out comes from per_host."),
            },
            "max_connections": {
                "type": "integer", "minimum": 1, "maximum": MAX_CONNECTIONS,
                "description": "Concurrent connections per host; more are refused (TCP reset) and counted.",
            },
        },
        ("members",),
    )


def _rate_pair_schema(description: str) -> Schema:
    bandwidth = 'A share of the link ("20%") or a rate ("5mbit").'
    return _object(description, {
        "guaranteed": _string(f"Always available. {bandwidth}", pattern=BANDWIDTH_PATTERN),
        "limit": _string(f"The most it may use. {bandwidth}", pattern=BANDWIDTH_PATTERN),
    })


def _rates_schema(description: str) -> Schema:
    schema = _rate_pair_schema(description + " Top-level keys apply to both directions.")
    schema["properties"] |= {
        "upload": _rate_pair_schema("Upload (WAN egress) only."),
        "download": _rate_pair_schema("Download (LAN egress) only."),
    }
    return schema


def application_schema() -> Schema:
    properties = {
        "name": _string("Display name."),
        "category": {"enum": list(CATEGORIES), "description": "The app's category."},
        "parent": _string("The id of the app this one is part of (instagram: facebook); "
                          "rules on the parent match it too.", pattern=NAME_PATTERN),
        "domains": _one_or_list(
            _string('"example.com" (and subdomains), "*.example.com" (subdomains only) or "=example.com" (exact).'),
            "Server names that identify the app.",
        ),
        "addresses": _one_or_list(_string("IPv4/IPv6 network or address."), "Server addresses."),
        "ports": _one_or_list(
            _string('"tcp/443" or "udp/5000-5010".', pattern=PORT_PATTERN), "Server ports."
        ),
        "signatures": _one_or_list(
            _string("A payload signature known to the classifier.", pattern=SIGNATURE_PATTERN),
            "Payload signatures.",
        ),
        "urls": _one_or_list(
            _string('"HOST/PATH-PREFIX", HOST a domain pattern or * (any host).'),
            "Plain-HTTP URL rules; a matching request belongs to this app whatever its Host.",
        ),
        "url_keywords": _one_or_list(
            _string("A word searched in the request path."),
            "Plain-HTTP URL keywords; a request whose path contains one belongs to this app.",
        ),
    }
    assert tuple(properties) == APPLICATION_KEYS
    return _object("An application and the evidence that identifies it.", properties, ("name", "category"))


def class_schema() -> Schema:
    bandwidth = 'A share of the link ("20%") or a rate ("5mbit").'
    return _object(
        "A QoS class, applied to both directions of the WAN link.",
        {
            "priority": {"type": "integer", "minimum": 0, "maximum": 7, "description": "0 = most urgent .. 7."},
            "guaranteed": _string(f"Always available to the class. {bandwidth} Default 0.", pattern=BANDWIDTH_PATTERN),
            "limit": _string(f"The most the class may use. {bandwidth} Default 100%.", pattern=BANDWIDTH_PATTERN),
            "upload": _rate_pair_schema("Upload-only guaranteed/limit, overriding the two above."),
            "download": _rate_pair_schema("Download-only guaranteed/limit, overriding the two above."),
        },
        ("priority",),
    )


def _decision_properties() -> Schema:
    return {
        "action": {"enum": list(ACTIONS), "description": "allow or block."},
        "class": _string("QoS class for allowed flows.", pattern=NAME_PATTERN),
    }


# `action: block` with a class makes no sense; `class` alone means allow.
_BLOCK_HAS_NO_CLASS: Schema = {"not": {"required": ["action", "class"], "properties": {"action": {"const": "block"}}}}


def rule_schema() -> Schema:
    properties = {
        "name": _string("Unique name, shown in logs and metrics."),
        "groups": _names("Match clients in any of these groups (omit = anyone)."),
        "except_groups": _names("...but not clients in these groups."),
        "apps": _names("Match these app ids (built-in or the policy's own)."),
        "categories": _one_or_list({"enum": list(CATEGORIES)}, "Match apps in these categories."),
        "schedule": _string("Only while this schedule is active.", pattern=NAME_PATTERN),
        **_decision_properties(),
    }
    schema = _object("A rule; the first matching rule decides a flow.", properties, ("name",))
    schema["anyOf"] = [{"required": ["action"]}, {"required": ["class"]}]
    schema["allOf"] = [_BLOCK_HAS_NO_CLASS]
    return schema


def policy_schema() -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "gatewayd policy",
        "description": "Traffic policy of the gatewayd office gateway. The loader also checks references and budgets.",
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "interfaces", "classes"],
        "properties": {
            "version": {"const": 1, "description": "Format version."},
            "interfaces": interfaces_schema(),
            "metrics": _object(
                "Prometheus endpoint.",
                {"listen": _string('"HOST:PORT"; IPv6 as "[::1]:9108". Default 127.0.0.1:9108.')},
            ),
            "classifier": _object(
                "Application classifier settings.",
                {
                    "fail_mode": {"enum": list(FAIL_MODES), "description": "New flows when the classifier is down."},
                    "max_packets": {
                        "type": "integer", "minimum": 1, "maximum": 32, "description": "Packets inspected per flow.",
                    },
                    "queue": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "NFQUEUE number."},
                    "tcp_only": _one_or_list(
                        _string("An application id or a category."),
                        "Apps/categories whose QUIC (UDP) is blocked so browsers fall back to TLS over TCP.",
                    ),
                },
            ),
            "schedules": _named_map("Named schedules.", schedule_schema()),
            "groups": _named_map("Departments, in accounting order.", group_schema(), MAX_GROUPS),
            "applications": _named_map(
                "The policy's own apps, merged over the built-in catalog.", application_schema()
            ),
            "classes": _named_map("QoS classes, in file order.", class_schema(), MAX_CLASSES),
            "default": _object("What happens to flows no rule matches.", _decision_properties())
            | {"allOf": [_BLOCK_HAS_NO_CLASS]},
            "rules": {"type": "array", "description": "Rules in order; first match wins.", "items": rule_schema()},
            "security": security_schema(),
            "health": _object(
                "Checks run after `gatewayd apply`; a failing check reverts the change.",
                {
                    "dns": _object("A name that must resolve.", {
                        "server": _string("DNS server address."), "name": _string("Name to resolve."),
                    }) | {"required": ["server", "name"]},
                    "probes": {"type": "array", "items": _string('"ADDRESS:PORT" that must accept TCP.'),
                               "description": "TCP services that must answer."},
                },
            ),
        },
    }


def render() -> str:
    return json.dumps(policy_schema(), indent=2) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
