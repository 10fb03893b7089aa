"""evidence_links: bytes delivered and reserved, so a one-time link delivers each byte once

Revision ID: 0009_link_bytes
Revises: 0008_audit_keyed_chain
Create Date: 2026-12-07 01:00:00

A used one-time link answered a Range request again (any range not starting at byte 0, and
several spellings of a whole-file range), so the package could be fetched twice. A link now
serves a byte range only if it starts at or after ``reserved_bytes``: the end of everything a
request through it has been allowed to send. When a transfer breaks off, ``reserved_bytes`` is
set back to ``delivered_bytes`` (what was written to the client), so a download manager can
resume where it stopped; nothing already sent is sent again.
"""

import sqlalchemy as sa
from alembic import op

revision = '0009_link_bytes'
down_revision = '0008_audit_keyed_chain'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('evidence_links') as batch:
        batch.add_column(sa.Column('delivered_bytes', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('reserved_bytes', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('evidence_links') as batch:
        batch.drop_column('reserved_bytes')
        batch.drop_column('delivered_bytes')
