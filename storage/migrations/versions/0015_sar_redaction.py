"""subject access request redaction: reviewers' marks on frames, and redaction jobs

Revision ID: 0015_sar_redaction
Revises: 0014_nodes
Create Date: 2026-12-07 11:20:00

docs/design/lawful-use.md (Redaction) says what the tables hold and why.
"""

import sqlalchemy as sa
from alembic import op

revision = '0015_sar_redaction'
down_revision = '0014_nodes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sar_marks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sar_id', sa.Integer(), nullable=False),
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('frame', sa.Integer(), nullable=False),
    sa.Column('x', sa.Integer(), nullable=False),
    sa.Column('y', sa.Integer(), nullable=False),
    sa.Column('w', sa.Integer(), nullable=False),
    sa.Column('h', sa.Integer(), nullable=False),
    sa.Column('until_frame', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('by', sa.String(length=200), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('removed_us', sa.BigInteger(), nullable=True),
    sa.Column('removed_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['sar_id'], ['sars.id'], name=op.f('fk_sar_marks_sar_id_sars'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['window_id'], ['sar_windows.id'], name=op.f('fk_sar_marks_window_id_sar_windows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sar_marks'))
    )
    with op.batch_alter_table('sar_marks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sar_marks_sar_id'), ['sar_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sar_marks_window_id'), ['window_id'], unique=False)

    op.create_table('sar_redaction_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sar_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=True),
    sa.Column('finished_us', sa.BigInteger(), nullable=True),
    sa.Column('heartbeat_us', sa.BigInteger(), nullable=True),
    sa.Column('stage', sa.String(length=200), nullable=False),
    sa.Column('done_frames', sa.BigInteger(), nullable=False),
    sa.Column('total_frames', sa.BigInteger(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('package_bytes', sa.BigInteger(), nullable=False),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
    sa.Column('obscured', sa.Integer(), nullable=False),
    sa.Column('kept', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['sar_id'], ['sars.id'], name=op.f('fk_sar_redaction_jobs_sar_id_sars'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sar_redaction_jobs'))
    )
    with op.batch_alter_table('sar_redaction_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sar_redaction_jobs_sar_id'), ['sar_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sar_redaction_jobs_state'), ['state'], unique=False)


def downgrade() -> None:
    op.drop_table('sar_redaction_jobs')
    op.drop_table('sar_marks')
