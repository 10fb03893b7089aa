"""camera_leases keyed by (camera, role): anpr nodes lease the ANPR cameras as recorder nodes lease
the cameras they record (issue 16); nodes.anpr_capacity; login_failures (the per-address throttle
and the lockout of names that are no account, shared by every API node)

Revision ID: 0020_cluster_state
Revises: 0019_redaction_jobs_queue
Create Date: 2026-12-07 15:00:00

One lease mechanism for both roles (docs/design/cluster.md): the existing leases are the
recorders'.
"""

import sqlalchemy as sa
from alembic import op

revision = '0020_cluster_state'
down_revision = '0019_redaction_jobs_queue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new primary key: SQLite rebuilds the table (batch mode), PostgreSQL alters it in place.
    with op.batch_alter_table('camera_leases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=20), nullable=False, server_default='recorder'))
        batch_op.drop_constraint('pk_camera_leases', type_='primary')
        batch_op.create_primary_key('pk_camera_leases', ['camera_id', 'role'])
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anpr_capacity', sa.Integer(), nullable=False, server_default='0'))
    op.create_table('login_failures',
    sa.Column('key', sa.String(length=320), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_us', sa.BigInteger(), nullable=False),
    sa.Column('last_us', sa.BigInteger(), nullable=False),
    sa.Column('locked_until_us', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_failures'))
    )
    op.create_index('ix_login_failures_last_us', 'login_failures', ['last_us'])


def downgrade() -> None:
    op.drop_table('login_failures')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('anpr_capacity')
    op.execute("DELETE FROM camera_leases WHERE role <> 'recorder'")
    with op.batch_alter_table('camera_leases', schema=None) as batch_op:
        batch_op.drop_constraint('pk_camera_leases', type_='primary')
        batch_op.create_primary_key('pk_camera_leases', ['camera_id'])
        batch_op.drop_column('role')
