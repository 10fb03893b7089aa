"""nodes, camera_leases: many recorder nodes coordinated through PostgreSQL (issue 16)

Revision ID: 0014_nodes
Revises: 0013_report_releases
Create Date: 2026-12-07 04:00:00

A node's heartbeat row, and the lease by which one node records a camera; the lease's
generation is the fencing token checked when a segment is catalogued (docs/design/cluster.md).
Asked to follow 0009_link_bytes; chained after 0011_duty_health, the head of this branch, so
that ``upgrade head`` has one head here; the lead re-chains at merge.
"""

import sqlalchemy as sa
from alembic import op

revision = '0014_nodes'
down_revision = '0013_report_releases'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('roles', sa.String(length=200), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=False),
    sa.Column('heartbeat_us', sa.BigInteger(), nullable=False),
    sa.Column('stopped_us', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes'))
    )
    op.create_table('camera_leases',
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.String(length=100), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.Column('moving_to', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_camera_leases_camera_id_cameras'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_camera_leases_node_id_nodes'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('camera_id', name=op.f('pk_camera_leases'))
    )
    op.create_index('ix_camera_leases_node_id', 'camera_leases', ['node_id'])


def downgrade() -> None:
    op.drop_table('camera_leases')
    op.drop_table('nodes')
