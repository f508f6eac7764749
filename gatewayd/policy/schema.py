"""JSON Schema (draft 2020-12) of the policy format, for editors and CI linting.

The loader is the real judge (it checks references, ranges and budgets a
schema cannot); the schema gives editors completion and early squiggles.
Each section's fragment lives in its reader module, built from the reader's
own constants so the two cannot drift apart; this module puts them together.
Regenerate the committed copy with:
    python3 -m gatewayd.policy.schema > schema/policy.schema.json
"""

from __future__ import annotations

import json

from gatewayd.policy.applications import application_schema
from gatewayd.policy.classes import MAX_CLASSES, class_schema
from gatewayd.policy.classifier import classifier_schema
from gatewayd.policy.dns import dns_schema
from gatewayd.policy.groups import MAX_GROUPS, group_schema
from gatewayd.policy.ha import ha_schema
from gatewayd.policy.health import health_schema
from gatewayd.policy.interfaces import interfaces_schema
from gatewayd.policy.link_pins import link_pin_schema
from gatewayd.policy.links import link_schema
from gatewayd.policy.metrics import metrics_schema
from gatewayd.policy.rules import default_schema, rule_schema
from gatewayd.policy.schedules import schedule_schema
from gatewayd.policy.schema_parts import Schema, named_map
from gatewayd.policy.security import security_schema
from gatewayd.policy.tunnels import tunnel_schema

SCHEMA_ID = "https://gatewayd.invalid/schema/policy.schema.json"


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
            "metrics": metrics_schema(),
            "classifier": classifier_schema(),
            "schedules": named_map("Named schedules.", schedule_schema()),
            "groups": named_map("Departments, in accounting order.", group_schema(), MAX_GROUPS),
            "applications": named_map(
                "The policy's own apps, merged over the built-in catalog.", application_schema()
            ),
            "classes": named_map("QoS classes, in file order.", class_schema(), MAX_CLASSES),
            "default": default_schema(),
            "rules": {"type": "array", "description": "Rules in order; first match wins.", "items": rule_schema()},
            "security": security_schema(),
            "health": health_schema(),
            "dns": dns_schema(),
            "links": link_schema(),
            "link_pins": link_pin_schema(),
            "tunnels": tunnel_schema(),
            "ha": ha_schema(),
        },
    }


def render() -> str:
    return json.dumps(policy_schema(), indent=2) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
