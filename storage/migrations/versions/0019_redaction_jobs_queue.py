"""SAR redactions run on the job queue: jobs.cancel_requested; sar_redaction_jobs carried over
into jobs (kind sar.redaction) and dropped

Revision ID: 0019_redaction_jobs_queue
Revises: 0018_privacy_masks
Create Date: 2026-12-07 15:00:00

One queue, one runner (docs/design/cluster.md, "Jobs"; lawful-use.md, "Redaction"). Every row
of ``sar_redaction_jobs`` becomes a ``jobs`` row, payload ``{"sar": id}``; its progress and
result (package, manifest hash, counts) become the job's checkpoint, where the runner now keeps
them. Pending work is carried over: a queued job stays queued; one left running (its runner
stopped with the old service) is queued again, to start from the beginning; one asked to stop
while running is cancelled. The packages on disk keep their names (``...-R<old id>.zip``): the
checkpoint names the file. Audit entries written before keep the old job ids; the checkpoint
keeps the old id as ``legacy_job``.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0019_redaction_jobs_queue'
down_revision = '0018_privacy_masks'
branch_labels = None
depends_on = None

KIND = "sar.redaction"
OLD_COLUMNS = ("id", "sar_id", "state", "created_us", "created_by", "started_us", "finished_us", "heartbeat_us",
               "stage", "done_frames", "total_frames", "cancel_requested", "error", "package", "package_bytes",
               "manifest_sha256", "obscured", "kept")


def _jobs_table() -> sa.Table:
    return sa.table("jobs", *(sa.column(c) for c in (
        "id", "kind", "payload", "unique_key", "state", "node_id", "attempt", "locked_until_us", "checkpoint",
        "created_us", "created_by", "started_us", "finished_us", "error", "cancel_requested")))


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False))
    bind = op.get_bind()
    old = sa.table("sar_redaction_jobs", *(sa.column(c) for c in OLD_COLUMNS))
    rows = bind.execute(sa.select(old).order_by(old.c.id)).mappings().all()
    jobs = _jobs_table()
    busy: set[int] = set()
    for r in rows:
        state, error = r["state"], r["error"] or ""
        if state == "running" and r["cancel_requested"]:
            state, error = "cancelled", "cancelled while running; its runner stopped with the service's upgrade"
        elif state == "running":
            state, error = "queued", "its runner stopped with the service's upgrade; queued again from the beginning"
        pending = state == "queued" and r["sar_id"] not in busy
        if state == "queued" and not pending:  # one per request at a time (the unique key)
            state, error = "cancelled", "a second queued redaction of the same request (carried over)"
        if pending:
            busy.add(r["sar_id"])
        checkpoint = {"legacy_job": r["id"], "stage": r["stage"] if state == "done" else "",
                      "done_frames": r["done_frames"] if state == "done" else 0,
                      "total_frames": r["total_frames"] if state == "done" else 0}
        if state == "done":
            checkpoint["result"] = {"package": r["package"], "package_bytes": r["package_bytes"],
                                    "manifest_sha256": r["manifest_sha256"], "obscured": r["obscured"],
                                    "left_visible": r["kept"], "windows_reused": []}
        bind.execute(sa.insert(jobs).values(
            kind=KIND, payload=json.dumps({"sar": r["sar_id"]}, sort_keys=True),
            unique_key=f"{KIND}:{r['sar_id']}" if pending else None, state=state, node_id=None, attempt=0,
            locked_until_us=None, checkpoint=json.dumps(checkpoint, sort_keys=True), created_us=r["created_us"],
            created_by=r["created_by"], started_us=None if pending else r["started_us"],
            finished_us=None if pending else (r["finished_us"] or r["heartbeat_us"] or r["created_us"]),
            error=error, cancel_requested=False))
    op.drop_table('sar_redaction_jobs')


def downgrade() -> None:
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
    bind = op.get_bind()
    jobs = _jobs_table()
    old = sa.table("sar_redaction_jobs", *(sa.column(c) for c in OLD_COLUMNS))
    for r in bind.execute(sa.select(jobs).where(jobs.c.kind == KIND).order_by(jobs.c.id)).mappings().all():
        seen = json.loads(r["checkpoint"] or "{}")
        result = seen.get("result") or {}
        state = "queued" if r["state"] == "running" else r["state"]  # its runner stopped with the service
        bind.execute(sa.insert(old).values(
            sar_id=json.loads(r["payload"])["sar"], state=state, created_us=r["created_us"],
            created_by=r["created_by"], started_us=r["started_us"], finished_us=r["finished_us"], heartbeat_us=None,
            stage=seen.get("stage", ""), done_frames=seen.get("done_frames", 0),
            total_frames=seen.get("total_frames", 0), cancel_requested=False, error=r["error"],
            package=result.get("package", ""), package_bytes=result.get("package_bytes", 0),
            manifest_sha256=result.get("manifest_sha256", ""), obscured=result.get("obscured", 0),
            kept=result.get("left_visible", 0)))
    bind.execute(sa.delete(jobs).where(jobs.c.kind == KIND))
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('cancel_requested')
