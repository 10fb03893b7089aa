"""segments: a covering index for the timeline, in place of (camera_id, start_us)

Revision ID: 0007_segments_timeline_index
Revises: 0006_onvif
Create Date: 2026-12-01 20:10:00

The timeline of a camera-day reads 2,880 rows. Through (camera_id, start_us) each row is a
second lookup in the table, and a camera's rows are spread over the table (cameras record at
the same time), so a camera-day touched about 2,880 table pages. Leading with the same two
columns, this index also answers every query the old one did.

PostgreSQL answers from the index alone only for pages its visibility map marks all-visible,
which a vacuum does. By default autovacuum visits an insert-only table after inserts of 20% of
it: about six days of footage for 100 cameras x 31 days, the days operators look at most.
Every 10,000 inserts (under an hour of 100 cameras) keeps that to the last hour; the vacuum of
an insert-only table reads only the pages not yet marked.
"""

from alembic import op

revision = '0007_segments_timeline_index'
down_revision = '0006_onvif'
branch_labels = None
depends_on = None

TIMELINE_COLUMNS = ['camera_id', 'start_us', 'end_us', 'state', 'id', 'bytes', 'sha256', 'path', 'codec',
                    'width', 'height', 'clock_offset_s', 'clock_flag']


def upgrade() -> None:
    op.create_index('ix_segments_timeline', 'segments', TIMELINE_COLUMNS, unique=False)
    op.drop_index('ix_segments_camera_start', table_name='segments')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE segments SET (autovacuum_vacuum_insert_scale_factor = 0, '
                   'autovacuum_vacuum_insert_threshold = 10000)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE segments RESET (autovacuum_vacuum_insert_scale_factor, '
                   'autovacuum_vacuum_insert_threshold)')
    op.create_index('ix_segments_camera_start', 'segments', ['camera_id', 'start_us'], unique=False)
    op.drop_index('ix_segments_timeline', table_name='segments')
