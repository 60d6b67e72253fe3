"""The campaign file's shape (PRODUCT.md §4), strict: unknown keys are errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reach.clock import ClockError, parse_instant
from reach.spec import SpecModel, check_duration, check_unique_ids


def _looks_like_cron(schedule: str) -> bool:
    return len(schedule.split()) >= 5 and "T" not in schedule


class AudienceSpec(SpecModel):
    segment: str | None = Field(default=None, description="Name of a segment file's `segment:`")
    conditions: list[dict[str, Any]] | None = Field(
        default=None, description="Inline segment conditions (PRODUCT.md §3)"
    )
    match: Literal["all", "any"] = "all"

    @model_validator(mode="after")
    def _one_of(self) -> AudienceSpec:
        if (self.segment is None) == (self.conditions is None):
            raise ValueError("give exactly one of 'segment' or 'conditions'")
        return self


class EmailSpec(SpecModel):
    from_: str = Field(alias="from", description="Sender, e.g. 'Acme <news@acme.test>'")
    subject: str
    preheader: str | None = None
    template: str = Field(description="Path of an .mjml template in the project")
    text_template: str | None = Field(default=None, description="Optional .txt template")
    reply_to: str | None = None


class SmsSpec(SpecModel):
    from_: str = Field(alias="from", description="Sender number (E.164) or alphanumeric ID")
    template: str | None = None
    body: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SmsSpec:
        if (self.template is None) == (self.body is None):
            raise ValueError("give exactly one of 'template' or 'body'")
        return self


class VariantSpec(SpecModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,50}$")
    weight: float = Field(default=1.0, gt=0)
    subject: str | None = None
    preheader: str | None = None
    template: str | None = None
    body: str | None = None  # SMS variants
    from_: str | None = Field(default=None, alias="from")


class AbTestSpec(SpecModel):
    variants: list[VariantSpec] = Field(min_length=2)
    strategy: Literal["test_then_decide", "bandit"] = Field(
        default="test_then_decide",
        description="test_then_decide: a test share, a decision at decide_after, the winner "
        "to the rest. bandit (recurring campaigns): every sending splits the whole audience "
        "by Thompson sampling on the results of the earlier sendings.")
    test_fraction: float = Field(default=0.2, gt=0, le=1)
    metric: Literal["opened", "clicked", "converted", "revenue"] = "clicked"
    decide_after: str = "4h"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    then: Literal["send_winner", "keep_split"] = "send_winner"
    fallback: Literal["keep_split", "send_best", "send_control"] = "send_control"
    min_per_variant: int = Field(default=100, ge=1)

    _check_decide = field_validator("decide_after")(classmethod(lambda cls, v: check_duration(v)))

    _unique_ids = field_validator("variants")(
        classmethod(lambda cls, v: check_unique_ids(v)))


class GoalSpec(SpecModel):
    event: str
    within: str = "5d"
    revenue: str | None = Field(default=None, description="Event property holding the amount")

    _check_within = field_validator("within")(classmethod(lambda cls, v: check_duration(v)))


class CostSpec(SpecModel):
    fixed: float = Field(default=0, ge=0)
    per_email: float = Field(default=0, ge=0)
    per_sms: float = Field(default=0, ge=0)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class ThrottleSpec(SpecModel):
    per_second: float = Field(gt=0)


class CampaignSpec(SpecModel):
    campaign: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$",
                          description="Unique name: lower-case letters, digits, - _ .")
    description: str | None = None
    audience: AudienceSpec
    schedule: str | None = Field(default=None, description="ISO time (once) or a cron expression")
    channel: Literal["email", "sms"] = "email"
    email: EmailSpec | None = None
    sms: SmsSpec | None = None
    ab_test: AbTestSpec | None = None
    holdout: float = Field(default=0, ge=0, lt=0.5)
    goal: GoalSpec | None = None
    cost: CostSpec = CostSpec()
    throttle: ThrottleSpec | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(ch.isdigit() for ch in value[:4]) and ("T" in value or value.count("-") >= 2):
            try:
                parse_instant(value)
            except ClockError as exc:
                raise ValueError(str(exc)) from exc
            return value
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither an ISO time nor a cron expression")
        return value

    @model_validator(mode="after")
    def _bandit_recurs(self) -> CampaignSpec:
        if self.ab_test and self.ab_test.strategy == "bandit" and (
                not self.schedule or not _looks_like_cron(self.schedule)):
            raise ValueError("ab_test strategy 'bandit' learns across sendings: give the "
                             "campaign a recurring schedule (cron), e.g. schedule: \"0 9 * * MON\"")
        return self

    @model_validator(mode="after")
    def _channel_block(self) -> CampaignSpec:
        if self.channel == "email" and self.email is None:
            raise ValueError("an email campaign needs an 'email:' block (from, subject, template)")
        if self.channel == "sms" and self.sms is None:
            raise ValueError("an SMS campaign needs an 'sms:' block (from, template or body)")
        return self
