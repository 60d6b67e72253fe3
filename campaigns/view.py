"""View in browser: re-render a sent email from its ledger row and stored plan."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy import Engine, select

from campaigns.sender import Renderers, load_contacts
from reach.db.schema import definitions, messages
from reach.settings import Settings


def render_view(settings: Settings, engine: Engine, message_id: int) -> str | None:
    """The HTML of one sent email as the recipient saw it (without the open pixel)."""
    from campaigns.plan import CampaignPlan

    with engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == message_id)).mappings().first()
        if row is None or row["channel"] != "email":
            return None
        kind = "campaign" if row["source_kind"] in ("campaign", "test") else row["source_kind"]
        plan_row = conn.execute(select(definitions.c.plan).where(
            definitions.c.kind == kind, definitions.c.name == row["source_name"],
            definitions.c.version == row["source_version"])).first()
        if plan_row is None:
            return None
        person = load_contacts(conn, [row["contact_id"]]).get(row["contact_id"])
    if person is None or person.get("erased_at"):
        return None
    if kind == "campaign":
        try:
            plan = CampaignPlan.model_validate(plan_row[0])
        except ValidationError:
            return None
        tpl = Renderers(settings, plan).get(dict(row))
        context = {"campaign": plan.name, "journey": None, "step": None,
                   "variant": row["variant"]}
    else:
        from journeys.view import journey_template

        found = journey_template(settings, plan_row[0], row["step_id"], row["variant"])
        if found is None:
            return None
        tpl, context = found
    return tpl.render_html_for_view(person, message_id=message_id, context=context)


def view_renderer(settings: Settings, engine: Engine) -> Callable[[int], str | None]:
    """The callable the tracking server's /v/ route uses."""
    return lambda message_id: render_view(settings, engine, message_id)
