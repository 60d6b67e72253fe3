"""The journey file's shape (PRODUCT.md §5), strict: unknown keys are errors.

A step is a mapping whose *kind key* (``email``, ``wait``, ``branch`` …) says what it is.
Steps are a union discriminated by which kind key is present (the same device as segment
conditions, :func:`audiences.spec.condition_union`), so a misspelt key inside an ``email``
step is reported against the email step. A step with no kind key at all goes to
:class:`UnknownStep`, whose fields are every kind key: a misspelt kind (``wiat: 2d``) is then
an unknown key with the hint ``did you mean 'wait'?`` and the list of allowed step keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from audiences.spec import LEAF_KINDS, NAME, AllGroup, AnyGroup, NotGroup
from campaigns.spec import CostSpec
from reach.spec import SpecModel, check_duration, check_unique_ids

STEP_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_CAP = re.compile(r"^\s*(\d+)\s+per\s+(\d+(?:\.\d+)?\s*[smhdw])\s*$")


def parse_cap(text: str) -> tuple[int, str]:
    """``"3 per 7d"`` -> (3, "7d")."""
    match = _CAP.match(text)
    if not match:
        raise ValueError(f"not a frequency cap: {text!r} (write e.g. '3 per 7d')")
    return int(match.group(1)), match.group(2).replace(" ", "")


def parse_clock(text: str) -> tuple[int, int]:
    """``"09:00"`` -> (9, 0)."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"not a time of day: {text!r} (write HH:MM, e.g. 09:00)")
    return int(match.group(1)), int(match.group(2))


def keyed_union(kinds: dict[str, type[SpecModel]], what: str,
                fallback: type[SpecModel] | None = None) -> Any:
    """A union discriminated by which key of ``kinds`` a mapping holds (first wins).

    A mapping with none of them goes to ``fallback`` (whose errors then explain), or is
    reported as ``{what} needs one of the keys …``.
    """
    models = {**kinds, **({"": fallback} if fallback else {})}

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            found = next((kinds[k].__name__ for k in kinds if k in value), None)
            return found or (fallback.__name__ if fallback else None)
        return next((m.__name__ for m in models.values() if isinstance(value, m)), None)

    keys = ", ".join(kinds)
    members = tuple(Annotated[m, Tag(m.__name__)] for m in models.values())
    return Annotated[
        Union[members],  # noqa: UP007 - a runtime-built union needs the subscript form
        Discriminator(pick, custom_error_type=f"{what}_kind",
                      custom_error_message=f"{what} needs one of the keys {keys}",
                      custom_error_context={"hint": f"start the {what} with one of: {keys}"}),
    ]


# --- journey-only conditions -------------------------------------------------------------

class OpenedCondition(SpecModel):
    """``{opened: STEP}``: the contact opened (human) the message of STEP in this entry."""

    opened: str


class ClickedCondition(SpecModel):
    """``{clicked: STEP}``: the contact clicked (human) the message of STEP in this entry."""

    clicked: str


class ConvertedCondition(SpecModel):
    """``{converted: true}``: the journey's goal event happened since the contact entered."""

    converted: bool = True


class JourneyAllGroup(AllGroup):
    all: list[JourneyCondition]  # type: ignore[assignment]


class JourneyAnyGroup(AnyGroup):
    any: list[JourneyCondition]  # type: ignore[assignment]


class JourneyNotGroup(NotGroup):
    not_: JourneyCondition = Field(alias="not")  # type: ignore[assignment]


JOURNEY_CONDITION_KINDS: dict[str, type[SpecModel]] = {
    **LEAF_KINDS,
    "opened": OpenedCondition,
    "clicked": ClickedCondition,
    "converted": ConvertedCondition,
    "all": JourneyAllGroup,
    "any": JourneyAnyGroup,
    "not": JourneyNotGroup,
}


class UnknownCondition(SpecModel):
    """A condition without a known key: a misspelt one gets a did-you-mean hint."""

    attribute: Any = None
    event: Any = None
    engaged: Any = None
    segment: Any = None
    opened: Any = None
    clicked: Any = None
    converted: Any = None
    all: Any = None
    any: Any = None
    not_: Any = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _no_kind(self) -> UnknownCondition:
        raise ValueError("a condition needs one of the keys " + ", ".join(JOURNEY_CONDITION_KINDS))


JourneyCondition = keyed_union(JOURNEY_CONDITION_KINDS, "a condition", UnknownCondition)
for _model in (JourneyAllGroup, JourneyAnyGroup, JourneyNotGroup):
    _model.model_rebuild()


# --- message bodies ------------------------------------------------------------------------

class EmailBody(SpecModel):
    """An email: template and subject; ``from`` defaults to the journey's ``settings.from``."""

    template: str = Field(description="Path of an .mjml template in the project")
    subject: str
    from_: str | None = Field(default=None, alias="from")
    preheader: str | None = None
    text_template: str | None = None
    reply_to: str | None = None


class SmsBody(SpecModel):
    """An SMS: a ``.sms`` template or an inline ``body``."""

    template: str | None = None
    body: str | None = None
    from_: str | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _one_of(self) -> SmsBody:
        if (self.template is None) == (self.body is None):
            raise ValueError("give exactly one of 'template' or 'body'")
        return self


class WaitUntil(SpecModel):
    """``{until: "09:00"}``: the next 09:00 in the contact's time zone."""

    until: str

    _check = field_validator("until")(classmethod(lambda cls, v: (parse_clock(v), v)[1]))


class WaitForBody(SpecModel):
    event: str = Field(min_length=1, max_length=64)
    timeout: str = Field(description="How long to wait for the event, e.g. 5d")

    _check = field_validator("timeout")(classmethod(lambda cls, v: check_duration(v)))


class IfArm(SpecModel):
    """``- if: CONDITION`` then ``steps: [...]`` (a list of conditions means all of them)."""

    if_: JourneyCondition = Field(alias="if")
    steps: list[Step] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _list_means_all(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("if"), list):
            return {**data, "if": {"all": data["if"]}}
        return data


class ElseArm(SpecModel):
    """``- else: [...]``: the steps of contacts no ``if`` matched."""

    else_: list[Step] = Field(alias="else")


BranchArm = keyed_union({"if": IfArm, "else": ElseArm}, "a branch arm")


class SplitPath(SpecModel):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,50}$")
    percent: float = Field(gt=0, le=100)
    steps: list[Step] = Field(default_factory=list)


class AbVariant(SpecModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,50}$")
    weight: float = Field(default=1.0, ge=0)
    email: EmailBody | None = None
    sms: SmsBody | None = None

    @model_validator(mode="after")
    def _one_channel(self) -> AbVariant:
        if (self.email is None) == (self.sms is None):
            raise ValueError(f"variant {self.id!r} needs exactly one of 'email' or 'sms'")
        return self


class AbTestBody(SpecModel):
    variants: list[AbVariant] = Field(min_length=2)
    metric: Literal["opened", "clicked", "converted", "revenue"] = "clicked"
    decide_after: str = "3d"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    fallback: Literal["keep_split", "send_best", "send_control"] = "send_control"

    _check = field_validator("decide_after")(classmethod(lambda cls, v: check_duration(v)))

    _unique = field_validator("variants")(classmethod(lambda cls, v: check_unique_ids(v)))


class UpdateBody(SpecModel):
    attributes: dict[str, Any] = Field(min_length=1)


class WebhookBody(SpecModel):
    url: str = Field(pattern=r"^https?://", description="http(s) URL the signed JSON goes to")
    method: Literal["POST"] = "POST"
    body: dict[str, Any] = Field(default_factory=dict, description="Extra JSON fields")


# --- steps ---------------------------------------------------------------------------------

class StepBase(SpecModel):
    # Optional here only so that a missing id is reported by journeys.checks at the step's
    # own position (a pydantic 'missing' error cannot point inside the step).
    id: str | None = Field(default=None, pattern=STEP_ID,
                           description="Unique in the journey; reports are per id")


class EmailStep(StepBase):
    email: EmailBody


class SmsStep(StepBase):
    sms: SmsBody


class WaitStep(StepBase):
    wait: str | WaitUntil

    @field_validator("wait")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return check_duration(value) if isinstance(value, str) else value


class WaitForStep(StepBase):
    wait_for: WaitForBody
    on_timeout: list[Step] = Field(default_factory=list)


class BranchStep(StepBase):
    branch: list[BranchArm] = Field(min_length=1)  # type: ignore[valid-type]

    @field_validator("branch")
    @classmethod
    def _else_last(cls, value: list[Any]) -> list[Any]:
        elses = [i for i, arm in enumerate(value) if isinstance(arm, ElseArm)]
        if elses and (len(elses) > 1 or elses[0] != len(value) - 1):
            raise ValueError("'else' may appear once, as the last arm of a branch")
        return value


class SplitStep(StepBase):
    split: list[SplitPath] = Field(min_length=2)

    @field_validator("split")
    @classmethod
    def _hundred(cls, value: list[SplitPath]) -> list[SplitPath]:
        total = sum(p.percent for p in value)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"split percentages add up to {total:g}, not 100")
        return value


class AbTestStep(StepBase):
    ab_test: AbTestBody


class UpdateStep(StepBase):
    update: UpdateBody


class WebhookStep(StepBase):
    webhook: WebhookBody


class ExitStep(StepBase):
    exit: bool | str = Field(description="true, or a reason shown in reports")


STEP_KINDS: dict[str, type[SpecModel]] = {
    "email": EmailStep, "sms": SmsStep, "wait_for": WaitForStep, "wait": WaitStep,
    "branch": BranchStep, "split": SplitStep, "ab_test": AbTestStep, "update": UpdateStep,
    "webhook": WebhookStep, "exit": ExitStep,
}


class UnknownStep(SpecModel):
    """A step without a kind key. Its fields are the keys allowed in a step, so a misspelt
    kind is an 'unknown key' error with a did-you-mean hint; none at all is a clear error."""

    id: str | None = None
    email: Any = None
    sms: Any = None
    wait: Any = None
    wait_for: Any = None
    on_timeout: Any = None
    branch: Any = None
    split: Any = None
    ab_test: Any = None
    update: Any = None
    webhook: Any = None
    exit: Any = None

    @model_validator(mode="after")
    def _no_kind(self) -> UnknownStep:
        raise ValueError("a step needs one of the keys " + ", ".join(STEP_KINDS))


Step = keyed_union(STEP_KINDS, "a step", UnknownStep)
for _model in (IfArm, ElseArm, SplitPath, WaitForStep, BranchStep, SplitStep):
    _model.model_rebuild()


# --- the journey ---------------------------------------------------------------------------

class ReEntryAfter(SpecModel):
    after: str

    _check = field_validator("after")(classmethod(lambda cls, v: check_duration(v)))


class EntrySpec(SpecModel):
    segment: str | None = Field(default=None, description="Enter when joining this segment")
    event: str | None = Field(default=None, description="Enter when this event arrives")
    schedule: str | None = Field(default=None, description="Cron: enter the segment's members")
    re_entry: str | ReEntryAfter = Field(default="never",
                                         description="never | always | {after: 30d}")

    @field_validator("re_entry", mode="before")
    @classmethod
    def _re_entry(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("never", "always"):
            raise ValueError(f"re_entry is never, always or {{after: 30d}}, not {value!r}")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter

        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 9 * * MON')")
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> EntrySpec:
        if self.event and (self.segment or self.schedule):
            raise ValueError("an event entry takes no 'segment' or 'schedule'")
        if not self.event and not self.segment:
            raise ValueError("give 'segment' (optionally with 'schedule') or 'event'")
        return self


class GoalSpec(SpecModel):
    event: str
    within: str | None = Field(default=None, description="Counted only this long after entry")
    revenue: str | None = Field(default=None, description="Event property holding the amount")

    _check = field_validator("within")(
        classmethod(lambda cls, v: v if v is None else check_duration(v)))


class JourneySettings(SpecModel):
    from_: str | None = Field(default=None, alias="from")
    timezone: str = Field(default="UTC", description="'contact' or an IANA name")
    quiet_hours: str | None = Field(default=None, description="e.g. '21:00-08:00'")
    frequency_cap: dict[Literal["email", "sms"], str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if value == "contact":
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use 'contact' or an IANA name "
                             "such as Europe/Berlin") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is None:
            return value
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"quiet_hours must look like '21:00-08:00', got {value!r}")
        parse_clock(start)
        parse_clock(end)
        return value

    @field_validator("frequency_cap")
    @classmethod
    def _caps(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            parse_cap(str(text))
        return value


class JourneySpec(SpecModel):
    """A file under ``journeys/``: steps each contact walks through on its own clock."""

    journey: str = Field(description="Unique name: letters, digits, - _ .")
    description: str = ""
    entry: EntrySpec
    goal: GoalSpec | None = None
    exit_on_goal: bool = False
    # What the journey costs, as for a campaign: reports give its ROI (PRODUCT.md §10).
    cost: CostSpec = CostSpec()
    settings: JourneySettings = JourneySettings()
    steps: list[Step] = Field(min_length=1)  # type: ignore[valid-type]

    @field_validator("journey")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a journey name is letters, digits, '-', '_' or '.'")
        return value

    @model_validator(mode="after")
    def _goal_exit(self) -> JourneySpec:
        if self.exit_on_goal and self.goal is None:
            raise ValueError("exit_on_goal needs a 'goal:'")
        return self
