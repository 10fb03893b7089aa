"""onvif camera events

Revision ID: 0006_onvif
Revises: 0005_accounts
Create Date: 2026-11-28 05:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006_onvif'
down_revision = '0005_accounts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('camera_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('state', sa.Boolean(), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('camera_time_us', sa.BigInteger(), nullable=True),
    sa.Column('received_us', sa.BigInteger(), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_camera_events_camera_id_cameras'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_camera_events'))
    )
    with op.batch_alter_table('camera_events', schema=None) as batch_op:
        batch_op.create_index('ix_camera_events_camera_at', ['camera_id', 'at_us'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('camera_events', schema=None) as batch_op:
        batch_op.drop_index('ix_camera_events_camera_at')
    op.drop_table('camera_events')
