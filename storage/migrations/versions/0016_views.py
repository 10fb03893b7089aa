"""views, site_maps, alerts.ack_note: shared layouts and tours, site plans, notes on acknowledgements (issue 14)

Revision ID: 0016_views
Revises: 0015_sar_redaction
Create Date: 2026-12-07 11:10:00

Named layouts and camera tours kept by the service and shared by site or with the whole
control room; uploaded site plans with camera pins (storage/views.py); the note an operator
writes when acknowledging an alert.
"""

import sqlalchemy as sa
from alembic import op

revision = '0016_views'
down_revision = '0015_sar_redaction'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('views',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_views_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_views'))
    )
    op.create_index(op.f('ix_views_owner'), 'views', ['owner'], unique=False)
    op.create_table('site_maps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('media_type', sa.String(length=20), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('image', sa.LargeBinary(), nullable=False),
    sa.Column('pins', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_maps_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_site_maps'))
    )
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('ack_note', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.drop_column('ack_note')
    op.drop_table('site_maps')
    op.drop_index(op.f('ix_views_owner'), table_name='views')
    op.drop_table('views')
