"""privacy_masks: per camera, the polygons no one without the unmask right may see (issue 15);
evidence_requests.masters_released and package_masks (a package's masks, the master release)

Revision ID: 0018_privacy_masks
Revises: 0017_jobs
Create Date: 2026-12-07 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0018_privacy_masks'
down_revision = '0017_jobs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('privacy_masks',
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('polygons', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('set_by', sa.String(length=200), nullable=False),
    sa.Column('set_us', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('applied_by', sa.String(length=16), nullable=False),
    sa.Column('camera_tokens', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_privacy_masks_camera_id_cameras'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('camera_id', name=op.f('pk_privacy_masks'))
    )
    with op.batch_alter_table('evidence_requests') as batch:
        batch.add_column(sa.Column('masters_released', sa.Boolean(), server_default='0', nullable=False))
        batch.add_column(sa.Column('package_masks', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('evidence_requests') as batch:
        batch.drop_column('package_masks')
        batch.drop_column('masters_released')
    op.drop_table('privacy_masks')
