"""View in browser for journey emails: the template of one step (and variant) of a stored plan."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from journeys.plan import load_plan
from reach.settings import Settings


def journey_template(settings: Settings, plan_json: dict[str, Any], step_id: str | None,
                     variant: str | None) -> tuple[Any, dict[str, Any]] | None:
    """(EmailTemplate, render context) of an email step of a stored journey plan, or None
    when the plan, the step or the template is gone or the step sends no email."""
    from campaigns.sender import Renderers

    try:
        plan = load_plan(plan_json)
    except ValidationError:
        return None
    if not step_id or step_id not in plan.nodes:
        return None
    row = {"step_id": step_id, "variant": variant}
    try:
        if plan.variant_for(row).channel != "email":
            return None
        tpl = Renderers(settings, plan).get(row)
    except (KeyError, StopIteration, OSError):
        return None
    except Exception:  # a template that no longer compiles: the page is simply not found
        return None
    return tpl, {"campaign": None, "journey": plan.name, "step": step_id, "variant": variant}
