"""report_releases: tasking packs a supervisor sent to police, kept as sent (issue 13)

Revision ID: 0013_report_releases
Revises: 0012_lawful_use
Create Date: 2026-12-07 03:45:00

The police-safe content is kept as JSON exactly as it was disclosed (storage.reports).
"""

import sqlalchemy as sa
from alembic import op

revision = '0013_report_releases'
down_revision = '0012_lawful_use'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('week', sa.String(length=10), nullable=False),
    sa.Column('sent_at_us', sa.BigInteger(), nullable=False),
    sa.Column('sent_by', sa.String(length=200), nullable=False),
    sa.Column('recipient', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_releases'))
    )
    op.create_index('ix_report_releases_recipient', 'report_releases', ['recipient', 'sent_at_us'])


def downgrade() -> None:
    op.drop_table('report_releases')
