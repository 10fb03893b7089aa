"""duty_sessions, rota_windows, camera_faults: monitoring hours and camera health (issue 13)

Revision ID: 0011_duty_health
Revises: 0010_occurrence_book
Create Date: 2026-12-07 03:30:00

Written beside 0010_occurrence_book (which also follows 0009_link_bytes); the two are chained
one after the other when merged. Two partial unique indexes carry rules the database must hold
against racing writers: a user has at most one open duty session, and a camera at most one
unrepaired automatic fault of each kind (storage.duty, storage.health).
"""

import sqlalchemy as sa
from alembic import op

revision = '0011_duty_health'
down_revision = '0010_occurrence_book'
branch_labels = None
depends_on = None

_OPEN_DUTY = sa.text('off_at_us IS NULL')
_UNREPAIRED_AUTOMATIC = sa.text("source = 'automatic' AND status IN ('open', 'reported')")


def upgrade() -> None:
    op.create_table('duty_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('on_at_us', sa.BigInteger(), nullable=False),
    sa.Column('off_at_us', sa.BigInteger(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duty_sessions'))
    )
    op.create_index('ix_duty_sessions_on_at_us', 'duty_sessions', ['on_at_us'])
    op.create_index('uq_duty_sessions_open', 'duty_sessions', ['username'], unique=True,
                    sqlite_where=_OPEN_DUTY, postgresql_where=_OPEN_DUTY)
    op.create_table('rota_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('start_minute', sa.Integer(), nullable=False),
    sa.Column('end_minute', sa.Integer(), nullable=False),
    sa.Column('operators', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rota_windows'))
    )
    op.create_table('camera_faults',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('opened_at_us', sa.BigInteger(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('contractor_ref', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('repaired_at_us', sa.BigInteger(), nullable=True),
    sa.Column('closed_at_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_camera_faults_camera_id_cameras'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_camera_faults'))
    )
    op.create_index('ix_camera_faults_camera_opened', 'camera_faults', ['camera_id', 'opened_at_us'])
    op.create_index('ix_camera_faults_status', 'camera_faults', ['status'])
    op.create_index('uq_camera_faults_automatic', 'camera_faults', ['camera_id', 'kind'], unique=True,
                    sqlite_where=_UNREPAIRED_AUTOMATIC, postgresql_where=_UNREPAIRED_AUTOMATIC)


def downgrade() -> None:
    op.drop_table('camera_faults')
    op.drop_table('rota_windows')
    op.drop_table('duty_sessions')
