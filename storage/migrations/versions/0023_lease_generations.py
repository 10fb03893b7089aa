"""lease_generations: when each generation of a camera's lease began and whose it was (issue 16:
a node cut off from the database catalogues, late, what it recorded before another node took
the camera, instead of fencing it)

Revision ID: 0023_lease_generations
Revises: 0022_relay_url
Create Date: 2026-12-07 18:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0023_lease_generations'
down_revision = '0022_relay_url'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lease_generations',
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.Column('node_id', sa.String(length=100), nullable=False),
    sa.Column('since_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_lease_generations_camera_id_cameras'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('camera_id', 'role', 'generation', name=op.f('pk_lease_generations'))
    )


def downgrade() -> None:
    op.drop_table('lease_generations')
