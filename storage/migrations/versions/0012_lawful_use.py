"""lawful use: RIPA authorisations (and their reviews, renewals, cancellations, directed uses),
subject access requests and their footage windows, and an evidence request's RIPA flag

Revision ID: 0012_lawful_use
Revises: 0011_duty_health
Create Date: 2026-12-07 03:13:11

docs/design/lawful-use.md says what the tables hold and why.
"""

import sqlalchemy as sa
from alembic import op

revision = '0012_lawful_use'
down_revision = '0011_duty_health'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ripa_authorisations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('authorising_officer', sa.String(length=200), nullable=False),
    sa.Column('grounds', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('operation', sa.Text(), nullable=False),
    sa.Column('camera_ids', sa.JSON(), nullable=False),
    sa.Column('site_ids', sa.JSON(), nullable=False),
    sa.Column('authorised_us', sa.BigInteger(), nullable=False),
    sa.Column('start_us', sa.BigInteger(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.Column('next_review_us', sa.BigInteger(), nullable=True),
    sa.Column('renewals', sa.Integer(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('cancelled_us', sa.BigInteger(), nullable=True),
    sa.Column('cancelled_by', sa.String(length=200), nullable=False),
    sa.Column('cancel_reason', sa.Text(), nullable=False),
    sa.Column('alerted', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ripa_authorisations')),
    sa.UniqueConstraint('reference', name=op.f('uq_ripa_authorisations_reference'))
    )
    with op.batch_alter_table('ripa_authorisations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ripa_authorisations_expires_us'), ['expires_us'], unique=False)

    op.create_table('ripa_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authorisation_id', sa.Integer(), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('by', sa.String(length=200), nullable=False),
    sa.Column('officer', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('next_review_us', sa.BigInteger(), nullable=True),
    sa.Column('expires_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['authorisation_id'], ['ripa_authorisations.id'], name=op.f('fk_ripa_events_authorisation_id_ripa_authorisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ripa_events'))
    )
    with op.batch_alter_table('ripa_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ripa_events_authorisation_id'), ['authorisation_id'], unique=False)

    op.create_table('sars',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=40), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('requester_name', sa.String(length=200), nullable=False),
    sa.Column('requester_contact', sa.Text(), nullable=False),
    sa.Column('received_us', sa.BigInteger(), nullable=False),
    sa.Column('identity_method', sa.Text(), nullable=False),
    sa.Column('identity_verified_by', sa.String(length=200), nullable=False),
    sa.Column('identity_verified_us', sa.BigInteger(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('places_times', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('clock_start_us', sa.BigInteger(), nullable=True),
    sa.Column('deadline_us', sa.BigInteger(), nullable=True),
    sa.Column('extended_us', sa.BigInteger(), nullable=True),
    sa.Column('extended_by', sa.String(length=200), nullable=False),
    sa.Column('extension_reason', sa.Text(), nullable=False),
    sa.Column('closed_us', sa.BigInteger(), nullable=True),
    sa.Column('closed_by', sa.String(length=200), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('exemption', sa.Text(), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('alerted', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['hold_id'], ['holds.id'], name=op.f('fk_sars_hold_id_holds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sars')),
    sa.UniqueConstraint('reference', name=op.f('uq_sars_reference'))
    )
    with op.batch_alter_table('sars', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sars_deadline_us'), ['deadline_us'], unique=False)
        batch_op.create_index(batch_op.f('ix_sars_state'), ['state'], unique=False)

    op.create_table('ripa_directed_uses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authorisation_id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('operator', sa.String(length=200), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=False),
    sa.Column('ended_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['authorisation_id'], ['ripa_authorisations.id'], name=op.f('fk_ripa_directed_uses_authorisation_id_ripa_authorisations')),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_ripa_directed_uses_camera_id_cameras')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ripa_directed_uses'))
    )
    with op.batch_alter_table('ripa_directed_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ripa_directed_uses_authorisation_id'), ['authorisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ripa_directed_uses_operator'), ['operator'], unique=False)

    op.create_table('sar_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sar_id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('start_us', sa.BigInteger(), nullable=False),
    sa.Column('end_us', sa.BigInteger(), nullable=False),
    sa.Column('added_by', sa.String(length=200), nullable=False),
    sa.Column('added_us', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_sar_windows_camera_id_cameras')),
    sa.ForeignKeyConstraint(['sar_id'], ['sars.id'], name=op.f('fk_sar_windows_sar_id_sars'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sar_windows'))
    )
    with op.batch_alter_table('sar_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sar_windows_sar_id'), ['sar_id'], unique=False)

    with op.batch_alter_table('evidence_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('directed_surveillance', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('ripa_reference', sa.String(length=100), server_default='', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('evidence_requests', schema=None) as batch_op:
        batch_op.drop_column('ripa_reference')
        batch_op.drop_column('directed_surveillance')

    with op.batch_alter_table('sar_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sar_windows_sar_id'))

    op.drop_table('sar_windows')
    with op.batch_alter_table('ripa_directed_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ripa_directed_uses_operator'))
        batch_op.drop_index(batch_op.f('ix_ripa_directed_uses_authorisation_id'))

    op.drop_table('ripa_directed_uses')
    with op.batch_alter_table('sars', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sars_state'))
        batch_op.drop_index(batch_op.f('ix_sars_deadline_us'))

    op.drop_table('sars')
    with op.batch_alter_table('ripa_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ripa_events_authorisation_id'))

    op.drop_table('ripa_events')
    with op.batch_alter_table('ripa_authorisations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ripa_authorisations_expires_us'))

    op.drop_table('ripa_authorisations')
