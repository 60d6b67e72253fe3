"""Looking before sending: dry runs, test sends and template previews."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, or_, select

from audiences.audience import contact_dict
from campaigns import ledger
from campaigns.plan import CampaignPlan
from campaigns.sender import Renderers, render_row, send_claimed
from reach.db.schema import contacts
from reach.errors import ReachError
from reach.project import sample_contacts
from reach.settings import Settings


def dry_run(settings: Settings, engine: Engine, plan: CampaignPlan) -> dict[str, Any]:
    """Audience size and one rendered sample; writes nothing."""
    from campaigns.run import audience_where

    where = audience_where(plan)
    with engine.connect() as conn:
        size = conn.execute(select(func.count()).select_from(contacts).where(where)).scalar()
        first = conn.execute(select(contacts).where(where).order_by(contacts.c.id).limit(1)).first()
    info: dict[str, Any] = {"campaign": plan.name, "version": plan.version,
                            "channel": plan.channel, "audience": int(size or 0)}
    if first is not None:
        row = {"id": 0, "source_kind": "campaign", "channel": plan.channel,
               "variant": plan.variants[0].id, "step_id": None}
        msg = render_row(Renderers(settings, plan), plan, row, contact_dict(first._mapping))
        info["sample"] = {"to": msg.to, "subject": msg.headers.get("Subject", "")}
    return info


def send_test(settings: Settings, engine: Engine, plan: CampaignPlan, address: str) -> str:
    """Send the first variant, personalised for the first audience member, to ``address``.

    It goes through the ledger like any message (kind ``test``), so it is tracked and never
    counted in the campaign's report.
    """
    from campaigns.run import audience_where

    with engine.begin() as conn:
        first = conn.execute(select(contacts.c.id).where(audience_where(plan))
                             .order_by(contacts.c.id).limit(1)).scalar()
        if first is None:
            raise ReachError("I501", "the audience is empty: nobody to personalise the test for")
        ids = ledger.enqueue_rows(conn, [{
            "idempotency_key": f"test:{plan.name}:{uuid.uuid4().hex}", "source_kind": "test",
            "source_name": plan.name, "source_version": plan.version, "contact_id": first,
            "channel": plan.channel, "variant": plan.variants[0].id, "to_address": address}])
    counts = send_claimed(settings, engine, plan, ledger.messages.c.id == ids[0],
                          owner="test-send")
    return "sent" if counts["sent"] else f"not sent: {counts}"


def preview_template(settings: Settings, engine: Engine, template: Path, *,
                     contact: str | None, subject: str, from_addr: str) -> dict[str, Any]:
    """Render a template for one contact (or the first sample contact)."""
    from campaigns.sender import load_contacts

    person: dict[str, Any] | None = None
    if contact:
        with engine.connect() as conn:
            cid = conn.execute(select(contacts.c.id).where(
                or_(contacts.c.email == contact.lower(), contacts.c.external_id == contact))
            ).scalar()
            if cid is None:
                raise ReachError("I501", f"no contact {contact!r}",
                                 hint="import contacts first, or omit --contact")
            person = load_contacts(conn, [cid])[cid]
    person = person or sample_contacts(settings)[0]
    path = template if template.is_absolute() else settings.project_dir / template
    if path.suffix == ".sms":
        from templating.sms import SmsTemplate

        sms = SmsTemplate.load(name=str(template), body=None, path=path, settings=settings)
        out = sms.render(person, context={"campaign": "preview"})
        m = out.measure
        return {"text": f"{out.body}\n\n[{m.encoding}, {m.units} units, {m.segments} segment(s)]"}
    from templating.email import EmailTemplate

    tpl = EmailTemplate.load(path, name=str(template), subject=subject, from_addr=from_addr,
                             preheader=None, settings=settings)
    out = tpl.render(person, message_id=0, context={"campaign": "preview"})
    return {"text": out.raw.decode("utf-8", "replace"), "html": out.html}
