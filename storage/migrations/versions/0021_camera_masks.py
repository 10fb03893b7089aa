"""privacy_masks: when the camera confirmed its masks, when they were last read back intact, and
why the service paints them (ONVIF Media2 masks, issue 15)

Revision ID: 0021_camera_masks
Revises: 0020_cluster_state
Create Date: 2026-12-07 15:10:00

docs/design/lawful-use.md, "Masks the camera paints".
"""

import sqlalchemy as sa
from alembic import op

revision = '0021_camera_masks'
down_revision = '0020_cluster_state'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('privacy_masks') as batch:
        batch.add_column(sa.Column('camera_since_us', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('camera_checked_us', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('camera_state', sa.Text(), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('privacy_masks') as batch:
        batch.drop_column('camera_state')
        batch.drop_column('camera_checked_us')
        batch.drop_column('camera_since_us')
