"""nodes.relay_url: where the other nodes fetch the live view of the cameras a recorder node
records (issue 16: live view on any API node from the recording node's one pull)

Revision ID: 0022_relay_url
Revises: 0021_camera_masks
Create Date: 2026-12-07 15:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0022_relay_url'
down_revision = '0021_camera_masks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relay_url', sa.String(length=300), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('relay_url')
