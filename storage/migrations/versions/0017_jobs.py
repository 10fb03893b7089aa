"""jobs: the job queue any jobs node takes from (issue 16)

Revision ID: 0017_jobs
Revises: 0016_views
Create Date: 2026-12-07 11:10:00

Exports, retention runs and other background work as rows that a ``jobs`` node takes with
``SELECT ... FOR UPDATE SKIP LOCKED``, under a lease fenced by (node, attempt); see
docs/design/cluster.md, "Jobs".
"""

import sqlalchemy as sa
from alembic import op

revision = '0017_jobs'
down_revision = '0016_views'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('unique_key', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('node_id', sa.String(length=100), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('locked_until_us', sa.BigInteger(), nullable=True),
    sa.Column('checkpoint', sa.Text(), nullable=True),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=True),
    sa.Column('finished_us', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('unique_key', name=op.f('uq_jobs_unique_key'))
    )
    op.create_index('ix_jobs_kind', 'jobs', ['kind'])
    op.create_index('ix_jobs_state', 'jobs', ['state'])


def downgrade() -> None:
    op.drop_table('jobs')
