"""The segment file and the condition language (PRODUCT.md §3), as pydantic models.

A condition is a mapping whose *key* says what it is: ``attribute:``, ``event:``,
``engaged:``, ``segment:``, or a group ``all:`` / ``any:`` / ``not:``. The union is
discriminated by which key is present (:func:`condition_union`), so an unknown key or an
unknown operator is reported against the right model with the keys allowed there.
Journeys extend the language with their own leaves by calling :func:`condition_union` with
more kinds and subclassing the three group models (see ``AllGroup``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from reach.spec import SpecModel, check_duration

# A value in a condition. Order matters: pydantic's smart union keeps YAML's own type
# (bool before int, datetime before date) so `eq: true` stays a boolean.
Scalar = bool | int | float | str | datetime | date

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "contains", "exists")
COUNT_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
# Attribute and property names end up inside JSON paths (as bound values); quotes and
# backslashes would need escaping that SQLite's JSON path syntax does not offer.
KEY = re.compile(r'^[^"\\\x00-\x1f]{1,200}$')


Duration = Annotated[str, Field(description="s m h d w, e.g. 90d")]


class Comparison(SpecModel):
    """One operator and its value: the part shared by attribute and property filters."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    contains: str | int | float | None = None
    exists: bool | None = None

    def operator(self) -> tuple[str, Any]:
        """The single operator given, as (name, value)."""
        for name in OPERATORS:
            value = getattr(self, "in_" if name == "in" else name)
            if value is not None:
                return name, value
        raise ValueError("no operator")  # unreachable after validation

    def _given(self) -> list[str]:
        return [n for n in OPERATORS if getattr(self, "in_" if n == "in" else n) is not None]


class PropertyFilter(Comparison):
    """A filter on one event property: exactly one operator."""

    @model_validator(mode="after")
    def _one_operator(self) -> PropertyFilter:
        given = self._given()
        if len(given) != 1:
            raise ValueError(
                f"give exactly one operator (got {', '.join(given) or 'none'}); "
                f"operators: {', '.join(OPERATORS)}"
            )
        return self


class AttributeCondition(Comparison):
    """``{attribute: NAME, <operator>: VALUE}`` or ``{attribute: NAME, within: 90d}``."""

    attribute: str
    within: Duration | None = None

    @field_validator("attribute")
    @classmethod
    def _name(cls, value: str) -> str:
        if not KEY.match(value):
            raise ValueError("an attribute name may not contain quotes, backslashes or "
                             "control characters")
        return value

    @field_validator("within")
    @classmethod
    def _within(cls, value: str | None) -> str | None:
        return None if value is None else check_duration(value)

    @model_validator(mode="after")
    def _one_operator(self) -> AttributeCondition:
        given = self._given() + (["within"] if self.within is not None else [])
        if len(given) != 1:
            raise ValueError(
                f"give exactly one operator for attribute {self.attribute!r} "
                f"(got {', '.join(given) or 'none'}); operators: {', '.join(OPERATORS)}, within"
            )
        return self


class CountSpec(SpecModel):
    """How many matching events: ``{gte: 2}``, ``{eq: 0}``, several are ANDed."""

    eq: int | None = Field(default=None, ge=0)
    ne: int | None = Field(default=None, ge=0)
    lt: int | None = Field(default=None, ge=0)
    lte: int | None = Field(default=None, ge=0)
    gt: int | None = Field(default=None, ge=0)
    gte: int | None = Field(default=None, ge=0)

    def bounds(self) -> list[tuple[str, int]]:
        """The (operator, number) pairs given."""
        return [(n, getattr(self, n)) for n in COUNT_OPERATORS if getattr(self, n) is not None]

    @model_validator(mode="after")
    def _some(self) -> CountSpec:
        if not self.bounds():
            raise ValueError(f"give at least one of {', '.join(COUNT_OPERATORS)}")
        return self


def _filter_or_value(value: Any) -> str:
    return "PropertyFilter" if isinstance(value, dict | PropertyFilter) else "value"


# ``{amount: {gte: 10}}`` or the shorthand ``{plan: pro}`` (equality).
PropertyValue = Annotated[
    Annotated[PropertyFilter, Tag("PropertyFilter")] | Annotated[Scalar, Tag("value")],
    Discriminator(_filter_or_value),
]


class EventCondition(SpecModel):
    """Behaviour: how many events of a type, in a window, with property filters."""

    event: str = Field(min_length=1, max_length=64)
    count: CountSpec = CountSpec(gte=1)
    within: Duration | None = None
    where: dict[str, PropertyValue] = {}

    @field_validator("within")
    @classmethod
    def _within(cls, value: str | None) -> str | None:
        return None if value is None else check_duration(value)

    @field_validator("where")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not KEY.match(key):
                raise ValueError(f"property name {key!r} may not contain quotes or backslashes")
        return value

    def filters(self) -> list[tuple[str, PropertyFilter]]:
        """``where`` with the shorthand ``{plan: pro}`` turned into ``{plan: {eq: pro}}``."""
        out = []
        for key, spec in self.where.items():
            out.append((key, spec if isinstance(spec, PropertyFilter) else PropertyFilter(eq=spec)))
        return out


class Engagement(SpecModel):
    """``{clicked: any, within: 60d}``: any campaign, or the name of one campaign/journey."""

    opened: str | None = None
    clicked: str | None = None
    within: Duration | None = None
    include_machine: bool = Field(
        default=False, description="Count opens/clicks flagged as machine-made too."
    )

    @field_validator("within")
    @classmethod
    def _within(cls, value: str | None) -> str | None:
        return None if value is None else check_duration(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Engagement:
        if (self.opened is None) == (self.clicked is None):
            raise ValueError("give exactly one of opened or clicked (a name, or 'any')")
        return self

    def kind(self) -> tuple[str, str]:
        """('open' | 'click', 'any' | source name)."""
        return ("open", self.opened) if self.opened is not None else ("click", self.clicked or "")


class EngagedCondition(SpecModel):
    """``engaged: {opened|clicked: any|NAME, within: 60d}``; human engagement only by default."""

    engaged: Engagement


class SegmentRef(SpecModel):
    """``segment: NAME``: the conditions of another segment."""

    segment: str


class AllGroup(SpecModel):
    """``all: [...]``: every condition holds."""

    all: list[Condition]


class AnyGroup(SpecModel):
    """``any: [...]``: at least one condition holds."""

    any: list[Condition]


class NotGroup(SpecModel):
    """``not: {...}``: the condition does not hold (a list means: not all of them)."""

    not_: Condition = Field(alias="not")

    @model_validator(mode="before")
    @classmethod
    def _list_means_all(cls, data: Any) -> Any:
        # `not: [a, b]` reads as "not all of a and b"; keep one shape for the compiler.
        if isinstance(data, dict) and isinstance(data.get("not"), list):
            return {**data, "not": {"all": data["not"]}}
        return data


def condition_union(kinds: Mapping[str, type[SpecModel]]) -> Any:
    """A union of condition models discriminated by which key of ``kinds`` is present.

    ``kinds`` maps a key (``attribute``) to its model; the first key of ``kinds`` found in
    the mapping decides, so an extra key is then reported as unknown by that model.
    """
    order = list(kinds)
    tags = {key: model.__name__ for key, model in kinds.items()}

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            for key in order:
                if key in value:
                    return tags[key]
            return None
        for key, model in kinds.items():
            if isinstance(value, model):
                return tags[key]
        return None

    members = tuple(Annotated[model, Tag(tags[key])] for key, model in kinds.items())
    return Annotated[
        Union[members],  # noqa: UP007 - a runtime-built union needs the subscript form
        Discriminator(
            pick,
            custom_error_type="condition_kind",
            custom_error_message=f"a condition needs one of the keys {', '.join(order)}",
            custom_error_context={"hint": f"start the condition with one of: {', '.join(order)}"},
        ),
    ]


LEAF_KINDS: dict[str, type[SpecModel]] = {
    "attribute": AttributeCondition,
    "event": EventCondition,
    "engaged": EngagedCondition,
    "segment": SegmentRef,
}
CONDITION_KINDS: dict[str, type[SpecModel]] = {
    **LEAF_KINDS, "all": AllGroup, "any": AnyGroup, "not": NotGroup,
}
Condition = condition_union(CONDITION_KINDS)
for _model in (AllGroup, AnyGroup, NotGroup):
    _model.model_rebuild()


class SegmentSpec(SpecModel):
    """A file under ``segments/``: a named audience."""

    segment: str = Field(description="The segment's name, referenced by campaigns and journeys.")
    description: str = ""
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(
        default_factory=list, description="An empty list under match: all is every contact."
    )

    @field_validator("segment")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a segment name is letters, digits, '-', '_' or '.' (e.g. active-pro)")
        return value
