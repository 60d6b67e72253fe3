"""The database schema, in SQLAlchemy Core.

One place for every table. Alembic migrations (``reach/db/migrations``) create and evolve
it; this module is what queries are written against. Timestamps are stored in UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

# Stable constraint names so migrations are the same on every database.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT keys on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer, "sqlite")
# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
Json = JSON().with_variant(JSONB, "postgresql")
Utc = DateTime(timezone=True)

# Subscription status per channel.
SUBSCRIBED, UNSUBSCRIBED = "subscribed", "unsubscribed"
BOUNCED, COMPLAINED = "bounced", "complained"

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("external_id", String(255), unique=True),
    Column("email", String(320), unique=True),
    Column("phone", String(32), index=True),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("country", String(2)),
    Column("timezone", String(64)),
    Column("locale", String(35)),
    Column("attributes", Json, nullable=False, default=dict),
    Column("email_status", String(16), nullable=False, default=SUBSCRIBED),
    Column("sms_status", String(16), nullable=False, default=SUBSCRIBED),
    Column("created_at", Utc, nullable=False),
    Column("updated_at", Utc, nullable=False),
    # Erasure (privacy request): personal data removed, the row kept for aggregate counts.
    Column("erased_at", Utc),
)

consent_changes = Table(
    "consent_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("channel", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(32), nullable=False),  # import, unsubscribe_link, bounce, sms_stop…
    Column("reason", Text),
    Column("message_id", Id),
    Column("changed_at", Utc, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("occurred_at", Utc, nullable=False),
    Column("properties", Json, nullable=False, default=dict),
    # Client-supplied id: importing or POSTing the same event twice records it once.
    Column("event_key", String(255), unique=True),
    Column("received_at", Utc, nullable=False),
    Index("ix_events_contact_type_time", "contact_id", "type", "occurred_at"),
    # Covers "events of a type in a window, per contact" (segment counts, attribution)
    # without reading the table.
    Index("ix_events_type_time_contact", "type", "occurred_at", "contact_id"),
)

definitions = Table(
    "definitions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # segment | campaign | journey
    Column("name", String(200), nullable=False),
    Column("version", String(64), nullable=False),  # content hash of the compiled plan
    Column("plan", Json, nullable=False),
    Column("source_file", String(500)),
    Column("created_at", Utc, nullable=False),
    UniqueConstraint("kind", "name", "version", name="uq_definitions_kind_name_version"),
)

campaign_state = Table(
    "campaign_state",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running | paused | waiting_ab | done
    Column("pause_reason", Text),
    Column("started_at", Utc),
    Column("run_started_at", Utc),  # this run (or resume): the error rate looks only at it
    Column("finished_at", Utc),
    Column("updated_at", Utc, nullable=False),
)

# The send ledger: one row per intended message, inserted before anything is sent.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # (source kind, name, step, variant, contact, occurrence): a unique key makes a second
    # run, a retried batch or a second worker unable to send the same message twice.
    Column("idempotency_key", String(400), nullable=False, unique=True),
    Column("source_kind", String(16), nullable=False),  # campaign | journey | test
    Column("source_name", String(200), nullable=False),
    Column("source_version", String(64), nullable=False),
    Column("step_id", String(100)),
    Column("variant", String(50)),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(8), nullable=False),  # email | sms | webhook
    # queued → sending → sent | failed | bounced; sending after a crash → unknown
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider_id", String(255)),
    Column("last_error", Text),
    Column("to_address", String(320)),
    Column("subject", Text),
    Column("segments", Integer),  # SMS parts, for cost
    Column("lease_owner", String(64)),
    Column("lease_until", Utc),
    Column("next_attempt_at", Utc),
    Column("attempted_at", Utc),  # the latest claim: recent error rates are measured by it
    Column("created_at", Utc, nullable=False),
    Column("sent_at", Utc),
    Column("delivered_at", Utc),
    # id last: a batch claims by id range within (campaign, status), in id order.
    Index("ix_messages_source_status_id", "source_name", "status", "id"),
    Index("ix_messages_contact", "contact_id"),
)

# Opens, clicks, unsubscribes, bounces, complaints, deliveries: what tracking records.
engagements = Table(
    "engagements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, nullable=False),
    Column("kind", String(16), nullable=False),  # open|click|unsubscribe|complaint|bounce|delivered
    Column("url", Text),
    Column("occurred_at", Utc, nullable=False),
    Column("machine", Boolean, nullable=False, default=False),
    Column("machine_reason", String(64)),
    Column("user_agent", Text),
    Column("ip", String(64)),
    Index("ix_engagements_message_kind", "message_id", "kind"),
    Index("ix_engagements_contact_kind_time", "contact_id", "kind", "occurred_at"),
)

ab_assignments = Table(
    "ab_assignments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("test_key", String(300), nullable=False),  # campaign:NAME or journey:NAME:STEP
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("variant", String(50), nullable=False),
    Column("phase", String(16), nullable=False, default="test"),  # test | rest | holdout
    Column("assigned_at", Utc, nullable=False),
    UniqueConstraint("test_key", "contact_id", name="uq_ab_assignments_test_contact"),
)

ab_decisions = Table(
    "ab_decisions",
    metadata,
    Column("test_key", String(300), primary_key=True),
    Column("decided_at", Utc, nullable=False),
    Column("winner", String(50)),
    Column("outcome", String(32), nullable=False),  # significant | fallback:<name>
    Column("stats", Json, nullable=False),
)

journey_states = Table(
    "journey_states",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("journey", String(200), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(64), nullable=False),
    Column("step_id", String(100)),
    Column("status", String(16), nullable=False),  # active | done | exited
    Column("exit_reason", String(64)),
    Column("due_at", Utc),
    Column("waiting_event", String(64)),
    Column("wait_deadline", Utc),
    Column("wait_since", Utc),
    Column("entry_count", Integer, nullable=False, default=1),
    Column("entered_at", Utc, nullable=False),
    Column("exited_at", Utc),
    Column("lease_owner", String(64)),
    Column("lease_until", Utc),
    UniqueConstraint("journey", "contact_id", name="uq_journey_states_journey_contact"),
    Index("ix_journey_states_due", "journey", "status", "due_at"),
)

# One row per step executed per journey entry: nobody runs the same step twice in one entry.
journey_steps = Table(
    "journey_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("journey", String(200), nullable=False),
    Column("contact_id", Id, nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("step_id", String(100), nullable=False),
    Column("outcome", String(64)),
    Column("executed_at", Utc, nullable=False),
    UniqueConstraint("journey", "contact_id", "entry_count", "step_id",
                     name="uq_journey_steps_once"),
    Index("ix_journey_steps_journey_step", "journey", "step_id"),  # per-step reports
)

# Computed traits (RFM, lifetime revenue), refreshed by a flow, usable in segments.
contact_traits = Table(
    "contact_traits",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("recency_days", Float),
    Column("frequency", Integer),
    Column("monetary", Numeric(14, 2)),
    Column("lifetime_revenue", Numeric(14, 2)),
    Column("r_score", Integer),
    Column("f_score", Integer),
    Column("m_score", Integer),
    Column("refreshed_at", Utc, nullable=False),
)
