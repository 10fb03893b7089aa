"""audit: the chain is keyed (HMAC-SHA-256) from here on, and the last anchor is recorded

Revision ID: 0008_audit_keyed_chain
Revises: 0007_segments_timeline_index
Create Date: 2026-12-07 00:40:00

Entries already written keep their plain SHA-256 (they cannot be re-keyed without rewriting the
trail, which is what the chain forbids). If there are any, one more unkeyed entry is appended,
``audit.chain_keyed`` naming the first keyed entry, so the switch is in the trail itself; the
``audit_chain`` row holds the same boundary for the verifier, and every signed anchor repeats
it, so moving it (to pass a rewritten chain off as unkeyed) disagrees with the anchors.

The canonical encoding and the SHA-256 rule are written out here, frozen, rather than imported:
a migration must do tomorrow what it did today, whatever storage.audit becomes.
"""

import hashlib
import json
import time

import sqlalchemy as sa
from alembic import op

revision = '0008_audit_keyed_chain'
down_revision = '0007_segments_timeline_index'
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _sha256_entry(seq, at_us, actor, action, target, details, prev) -> str:
    body = json.dumps([seq, at_us, actor, action, target, details, prev], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def upgrade() -> None:
    op.create_table(
        'audit_chain',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('keyed_from_seq', sa.BigInteger(), nullable=False),
        sa.Column('keyed_at_us', sa.BigInteger(), nullable=False),
        sa.Column('anchored_seq', sa.BigInteger(), nullable=False),
        sa.Column('anchored_hash', sa.String(length=64), nullable=False),
        sa.Column('anchored_us', sa.BigInteger(), nullable=False),
        sa.Column('anchor_path', sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain')),
    )
    bind = op.get_bind()
    now_us = time.time_ns() // 1000
    head = bind.execute(sa.text("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")).first()
    if head is None:
        keyed_from = 1
    else:
        seq, prev = head[0] + 1, head[1]
        keyed_from = seq + 1
        details = json.dumps({"keyed_from_seq": keyed_from, "rule": "HMAC-SHA-256"},
                             sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        entry = {"seq": seq, "at_us": now_us, "actor": "system", "action": "audit.chain_keyed", "target": "audit",
                 "details": details, "prev_hash": prev}
        entry["hash"] = _sha256_entry(seq, now_us, "system", "audit.chain_keyed", "audit", details, prev)
        bind.execute(sa.text(
            "INSERT INTO audit (seq, at_us, actor, action, target, details, prev_hash, hash) "
            "VALUES (:seq, :at_us, :actor, :action, :target, :details, :prev_hash, :hash)"), entry)
    bind.execute(sa.text(
        "INSERT INTO audit_chain (id, keyed_from_seq, keyed_at_us, anchored_seq, anchored_hash, anchored_us, "
        "anchor_path) VALUES (1, :k, :at, 0, '', 0, '')"), {"k": keyed_from, "at": now_us})


def downgrade() -> None:
    # The audit.chain_keyed entry and the keyed entries stay: they are the trail. Code from
    # before this revision cannot verify keyed entries (it reports them as altered).
    op.drop_table('audit_chain')
