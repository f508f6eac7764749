"""The committed JSON Schema is the generated one, and the shipped example obeys it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from gatewayd.policy.schema import policy_schema, render

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "schema" / "policy.schema.json"
OFFICE = REPO / "policies" / "office.yaml"


def validator() -> jsonschema.Draft202012Validator:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_up_to_date() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "regenerate: python3 -m gatewayd.policy.schema > schema/policy.schema.json"
    )


def test_office_policy_validates() -> None:
    validator().validate(yaml.safe_load(OFFICE.read_text(encoding="utf-8")))


def test_office_policy_points_editors_at_the_schema() -> None:
    first_line = OFFICE.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schema/policy.schema.json"


@pytest.mark.parametrize(
    "mutation",
    [
        lambda policy: policy["rules"][0].update(grups=["sales"]),
        lambda policy: policy["classes"]["bulk"].update(limit="30mbps"),
        lambda policy: policy["rules"][2].update(categories=["gamez"]),
        lambda policy: policy["rules"][2].update({"class": "bulk"}),  # block with a class
        lambda policy: policy["schedules"]["work-hours"].update(days="mun"),
        lambda policy: policy.update(version=2),
    ],
)
def test_schema_rejects_obvious_mistakes(mutation) -> None:  # type: ignore[no-untyped-def]
    policy = yaml.safe_load(OFFICE.read_text(encoding="utf-8"))
    mutation(policy)
    assert list(validator().iter_errors(policy))


def test_schema_is_valid_json_with_descriptions() -> None:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["interfaces"]["description"]
