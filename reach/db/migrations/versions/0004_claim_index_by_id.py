"""claim index by id

A batch claims its rows by ledger id range within a campaign and status; with the index on
(source_name, status) alone PostgreSQL walked every queued row of the campaign for each
claim of 100 (168 ms a claim at 1M messages). With ``id`` as the third column the range is
part of the index condition and the rows come out in claim order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 18:05:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_source_status')
        batch_op.create_index('ix_messages_source_status_id', ['source_name', 'status', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_source_status_id')
        batch_op.create_index('ix_messages_source_status', ['source_name', 'status'],
                              unique=False)
