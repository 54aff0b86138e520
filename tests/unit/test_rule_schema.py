"""A notification rule's OpenAPI schema (one object per kind) and the API's check of a
rule (`check_rule`) agree: what the schema requires is what the check needs, and a field
the schema leaves out of a kind is one the check refuses."""

from __future__ import annotations

from typing import Any

import pytest

from sundial.api.notification_schemas import RuleCreate
from sundial.api.notifications import check_rule
from sundial.core import notifications as n
from sundial.core.errors import InvalidInput

VARIANTS = {v["properties"]["kind"]["const"]: v for v in RuleCreate.model_json_schema()["oneOf"]}
EXAMPLES = {"channel_id": 1, "job_id": 1, "schedule_id": 1, "queue": "default",
            "statuses": ["failed"], "within_seconds": 60.0, "threshold": 10}


def body(kind: str, **extra: Any) -> RuleCreate:
    needed = {f: EXAMPLES[f] for f in VARIANTS[kind]["required"] if f in EXAMPLES}
    return RuleCreate.model_validate({"name": "r", "kind": kind, **needed, **extra})


@pytest.mark.parametrize("kind", n.RULE_KINDS)
def test_what_the_schema_requires_is_enough(kind: str) -> None:
    rule = body(kind)
    check_rule(rule.model_dump(), sent=rule.model_fields_set)


@pytest.mark.parametrize("kind", n.RULE_KINDS)
def test_a_field_the_schema_leaves_out_is_refused_even_null(kind: str) -> None:
    others = set(EXAMPLES) - set(VARIANTS[kind]["properties"])
    for field in sorted(others):
        for value in (EXAMPLES[field], None):
            rule = body(kind, **{field: value})
            with pytest.raises(InvalidInput) as refused:
                check_rule(rule.model_dump(), sent=rule.model_fields_set)
            assert refused.value.field == field


@pytest.mark.parametrize("kind", sorted(n.NEEDS_WITHIN | n.NEEDS_THRESHOLD))
def test_a_required_field_is_not_nullable_in_the_schema(kind: str) -> None:
    variant = VARIANTS[kind]
    for field in set(variant["required"]) & {"within_seconds", "threshold"}:
        assert variant["properties"][field]["type"] in ("number", "integer"), (kind, field)
        assert "anyOf" not in variant["properties"][field]
