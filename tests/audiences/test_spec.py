"""The segment file's validation, through the position-keeping YAML loader."""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter
from sqlalchemy import literal

from audiences.compiler import compile_conditions
from audiences.spec import (
    CONDITION_KINDS,
    AllGroup,
    AnyGroup,
    NotGroup,
    SegmentSpec,
    condition_union,
)
from reach.spec import SpecModel
from reach.yamlload import parse_yaml, validate_model

GOOD = """segment: active-pro
description: Pro customers in DACH who bought twice this month
match: all
conditions:
  - attribute: country
    in: [DE, AT, CH]
  - attribute: plan
    eq: pro
  - attribute: signed_up_at
    within: 90d
  - event: purchase
    count: {gte: 2}
    within: 30d
    where: {amount: {gte: 10}}
  - engaged: {clicked: any, within: 60d}
  - not:
      attribute: email
      contains: "@example.org"
  - any:
      - {attribute: vip, eq: true}
      - {event: referral, count: {gte: 1}}
"""


def validate(text: str) -> tuple[Any, list]:
    doc, diags = parse_yaml(text, "segments/s.yaml")
    assert not diags
    return validate_model(SegmentSpec, doc)


def test_the_product_example_validates_and_compiles() -> None:
    spec, diags = validate(GOOD)
    assert diags == [] and spec.segment == "active-pro"
    assert spec.conditions[6].any[0].eq is True  # YAML booleans stay booleans
    compile_conditions(spec.conditions)


def test_unknown_operator_lists_the_allowed_ones() -> None:
    _, diags = validate("segment: s\nconditions:\n  - attribute: plan\n    equals: pro\n")
    (d,) = diags
    assert (d.code, d.line, d.col, d.path) == ("K101", 4, 5, "conditions[0].equals")
    assert "did you mean 'eq'" in d.hint and "not_in, contains, exists" in d.hint


def test_errors_point_at_the_right_place() -> None:
    text = ("segment: s\nconditions:\n"
            "  - {attribute: plan}\n"                                  # 3: no operator
            "  - {atribute: plan, eq: 1}\n"                            # 4: unknown kind
            "  - event: purchase\n    where: {amount: {gteq: 10}}\n"   # 6: unknown operator
            "  - any:\n      - {attribute: vip, eq: true, event: x}\n"  # 8: two kinds
            "  - {event: x, within: 3 days}\n"                          # 9: bad duration
            "  - engaged: {opened: any, clicked: any}\n")               # 10: both kinds
    _, diags = validate(text)
    got = {(d.line, d.code) for d in diags}
    assert got == {(3, "K103"), (4, "K103"), (6, "K101"), (8, "K101"), (9, "K103"),
                   (10, "K103")}
    by_line = {d.line: d for d in diags}
    assert "operators: eq, ne" in by_line[3].message
    assert "needs one of the keys attribute, event" in by_line[4].message
    assert "did you mean 'gte'" in by_line[6].hint
    assert "not a duration" in by_line[9].message
    assert "exactly one of opened or clicked" in by_line[10].message


def test_not_with_a_list_means_not_all() -> None:
    spec, _ = validate("segment: s\nconditions:\n  - not: [{attribute: a, eq: 1}, "
                       "{attribute: b, eq: 2}]\n")
    assert isinstance(spec.conditions[0], NotGroup)
    assert len(spec.conditions[0].not_.all) == 2


def test_the_language_can_be_extended_the_way_journeys_need() -> None:
    class StepClicked(SpecModel):
        clicked: str

    class JAll(AllGroup):
        all: list[JCondition]  # type: ignore[assignment]

    class JAny(AnyGroup):
        any: list[JCondition]  # type: ignore[assignment]

    class JNot(NotGroup):
        not_: JCondition = Field(alias="not")  # type: ignore[assignment]

    JCondition = condition_union(  # noqa: N806
        {**CONDITION_KINDS, "clicked": StepClicked, "all": JAll, "any": JAny, "not": JNot})
    for model in (JAll, JAny, JNot):
        model.model_rebuild(_types_namespace={"JCondition": JCondition})
    conds = TypeAdapter(list[JCondition]).validate_python(
        [{"not": {"any": [{"clicked": "welcome"}, {"attribute": "plan", "eq": "pro"}]}}])
    inner = conds[0].not_.any
    assert isinstance(inner[0], StepClicked) and inner[1].attribute == "plan"
    where = compile_conditions(conds, extra={StepClicked: lambda c, ctx: literal(True)})
    assert "true" in str(where).lower() or "1" in str(where)
