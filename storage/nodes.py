"""Nodes of a cluster and the leases by which they share the cameras (docs/design/cluster.md).

A node is one ``controlroom serve`` process; its row in ``nodes`` carries its roles, capacities and
heartbeat. A camera is recorded only by the node holding its ``recorder`` lease in
``camera_leases``, and read for plates only by the node holding its ``anpr`` lease: one lease per
(camera, role), one mechanism for both roles (:data:`LEASED_ROLES`). The lease's ``generation``
goes up by one each time it changes hands and is the fencing token that :func:`check_fence`
verifies when a segment (or a plate read) is stored, so a node that lost a camera (cut off,
paused, slow to notice) can never store its footage or reads under a newer holder.

Every lease time is the **database's** clock (``clock_timestamp()`` on PostgreSQL), never a
node's: a node whose clock is off must neither keep nor steal a lease because of it. On SQLite
(one machine, one node) the process clock is the database's.

Claims lock candidate cameras ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two nodes claiming at the
same moment take disjoint cameras without waiting for each other. SQLite has one writer, so a
claim there is trivially alone.

:class:`LeaseKeeper` is the loop of one node (heartbeat, renew, claim every ``heartbeat_s``);
its :meth:`LeaseKeeper.tick` is one step, for tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    cast,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from storage import Conflict, Invalid, NotFound, jobs
from storage.db import Base, insert_for, now_us, transaction
from storage.models import Camera, CameraKind

log = logging.getLogger(__name__)

ROLES = ("recorder", "anpr", "api", "jobs")
# The roles that lease cameras: a recorder node records the cameras it holds, an anpr node reads
# the plates of the ANPR cameras it holds. The same table, statements and loop for both.
LEASED_ROLES = ("recorder", "anpr")
NODE_ID_MAX = 100


class NodeRow(Base):
    """One node of the cluster: its heartbeat is how the others know it lives."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(NODE_ID_MAX), primary_key=True)
    roles: Mapped[str] = mapped_column(String(200), default=",".join(ROLES))
    capacity: Mapped[int] = mapped_column(Integer, default=0)  # cameras it records at most
    anpr_capacity: Mapped[int] = mapped_column(Integer, default=0)  # ANPR cameras it reads at most
    host: Mapped[str] = mapped_column(String(255), default="")
    # Where the other nodes fetch the live view of the cameras it records (a recorder node's
    # relay listener, controlroom.relay); "" for a node that records nothing.
    relay_url: Mapped[str] = mapped_column(String(300), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    started_us: Mapped[int] = mapped_column(BigInteger)
    heartbeat_us: Mapped[int] = mapped_column(BigInteger)
    stopped_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None while it runs


class CameraLease(Base):
    """Which node records a camera (role ``recorder``) or reads its plates (role ``anpr``).
    ``generation`` fences (see the module docstring)."""

    __tablename__ = "camera_leases"
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True, default="recorder")
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=1)
    expires_us: Mapped[int] = mapped_column(BigInteger)
    # A move asked for (controlroom cameras move): the holder hands over once it has stopped.
    moving_to: Mapped[str | None] = mapped_column(String(NODE_ID_MAX), nullable=True)


class LeaseGeneration(Base):
    """When each generation of a camera's lease began, on the database's clock, and whose it was.
    A segment of an older generation that ended before the next generation began cannot overlap
    any later holder's footage: it is catalogued late instead of fenced (:func:`check_fence`;
    docs/design/cluster.md, "Cut off from the database")."""

    __tablename__ = "lease_generations"
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(NODE_ID_MAX))
    since_us: Mapped[int] = mapped_column(BigInteger)


class Late(NamedTuple):
    """A segment (read) of an older generation accepted by :func:`check_fence` because it ended
    before the next generation began."""

    generation: int  # the camera's generation now
    node_id: str  # its holder now
    next_since_us: int  # when the generation after the fence's began (the database's clock)


class Fenced(Conflict):
    """A segment recorded (or a plate read) under a lease generation that is no longer the camera's."""


@dataclass(frozen=True)
class Fence:
    """The lease a recorder (or a plate reader) was started under: checked when each of its
    segments (reads) is stored."""

    node_id: str
    generation: int
    role: str = "recorder"


class Held(NamedTuple):
    generation: int
    moving_to: str | None


class NodeInfo(NamedTuple):
    id: str
    roles: tuple[str, ...]
    capacity: int
    host: str
    pid: int
    started_us: int
    heartbeat_us: int
    stopped_us: int | None
    cameras: int  # recorder leases held (expired or not)
    anpr_cameras: int  # anpr leases held
    anpr_capacity: int
    state: str  # running, lost (no heartbeat for a lease's time-to-live), stopped


# -- node ids --------------------------------------------------------------------------------
def load_or_create_node_id(data_dir: Path, configured: str = "") -> str:
    """The node's id: ``configured`` if given, else ``<data_dir>/node-id`` (written at the first
    start: the host name and 8 random hex digits), stable across restarts."""
    if configured:
        return valid_node_id(configured)
    path = data_dir / "node-id"
    if path.exists():
        return valid_node_id(path.read_text().strip())
    node_id = f"{socket.gethostname()[:60]}-{secrets.token_hex(4)}"
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(node_id + "\n")
    os.replace(tmp, path)
    return node_id


def valid_node_id(text: str) -> str:
    if not text or len(text) > NODE_ID_MAX or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in text):
        raise Invalid(f"node id {text[:120]!r}: 1 to {NODE_ID_MAX} ASCII letters, digits, '-', '_' or '.'")
    return text


def parse_roles(text: str) -> tuple[str, ...]:
    """``"recorder,api"`` -> ("recorder", "api"); an unknown role is bad input."""
    roles = tuple(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise Invalid(f"roles {text!r}: choose from {', '.join(ROLES)}")
    return roles


# -- the database's clock --------------------------------------------------------------------
def _now(session: AsyncSession) -> Any:
    """Now, in microseconds, as the database sees it (a SQL expression on PostgreSQL)."""
    if session.bind.dialect.name == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()) * 1_000_000, BigInteger)
    return now_us()


def _postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


def leasable(role: str) -> tuple[Any, ...]:
    """The cameras the nodes of ``role`` lease: a recorder every enabled recording camera with a
    stream; an anpr node every enabled ANPR camera with a stream (anpr.live reads the sub stream
    or the main one)."""
    if role == "recorder":
        return (Camera.enabled, Camera.recording, Camera.main_url != "")
    if role == "anpr":
        return (Camera.enabled, Camera.kind == CameraKind.ANPR.value, or_(Camera.main_url != "", Camera.sub_url != ""))
    raise Invalid(f"role {role!r} leases no cameras (choose from {', '.join(LEASED_ROLES)})")


def capacity_of(row: NodeRow, role: str) -> int:
    return row.capacity if role == "recorder" else row.anpr_capacity if role == "anpr" else 0


async def db_now_us(session: AsyncSession) -> int:
    if _postgres(session):
        return int(await session.scalar(select(_now(session))))
    return now_us()


# -- nodes -----------------------------------------------------------------------------------
async def register(
    session: AsyncSession, node_id: str, roles: tuple[str, ...], capacity: int, *, ttl_s: float,
    host: str | None = None, pid: int | None = None, anpr_capacity: int = 0, relay_url: str = "",
) -> None:
    """Insert or restart this node's row. Refuses (:class:`Conflict`) an id whose row has a fresh
    heartbeat from another host: two machines started with one data dir's copy."""
    host = host if host is not None else socket.gethostname()
    pid = pid if pid is not None else os.getpid()
    now = await db_now_us(session)
    row = await session.get(NodeRow, node_id, with_for_update=_postgres(session))
    if row is not None and row.stopped_us is None and row.host != host and now - row.heartbeat_us < ttl_s * 1e6:
        raise Conflict(f"node {node_id} is already running on {row.host} (pid {row.pid}, heartbeat "
                       f"{(now - row.heartbeat_us) / 1e6:.0f} s ago): give this node another id")
    if row is None:
        session.add(NodeRow(id=node_id, roles=",".join(roles), capacity=capacity, anpr_capacity=anpr_capacity,
                            host=host, relay_url=relay_url, pid=pid, started_us=now, heartbeat_us=now, stopped_us=None))
    else:
        row.roles, row.capacity, row.host, row.pid = ",".join(roles), capacity, host, pid
        row.anpr_capacity, row.relay_url = anpr_capacity, relay_url
        row.started_us, row.heartbeat_us, row.stopped_us = now, now, None
    await session.flush()


async def heartbeat(session: AsyncSession, node_id: str, ttl_s: float) -> dict[str, dict[int, Held]]:
    """Refresh the node's heartbeat and renew every lease it holds (cameras of every role, jobs);
    returns the cameras it holds now, by role (a role it holds none of is left out).

    A lease that expired but that nobody took is renewed (its footage is still good); one that
    another node took is not this node's any more and is not returned."""
    now = _now(session)
    found = await session.execute(update(NodeRow).where(NodeRow.id == node_id)
                                  .values(heartbeat_us=now, stopped_us=None).returning(NodeRow.id))
    if found.first() is None:
        raise NotFound(f"node {node_id} has no row (deleted while it ran?)")
    rows = await session.execute(
        update(CameraLease).where(CameraLease.node_id == node_id)
        .values(expires_us=now + int(ttl_s * 1e6))
        .returning(CameraLease.role, CameraLease.camera_id, CameraLease.generation, CameraLease.moving_to))
    await jobs.renew(session, node_id, ttl_s)  # the jobs it runs live as long as it does
    held: dict[str, dict[int, Held]] = {}
    for role, cam, gen, moving in rows.all():
        held.setdefault(role, {})[cam] = Held(gen, moving)
    return held


async def claim(session: AsyncSession, node_id: str, room: int, ttl_s: float, role: str = "recorder") -> dict[int, int]:
    """Take up to ``room`` cameras of ``role`` (:func:`leasable`) that no live lease of that role
    covers; camera id -> generation.

    PostgreSQL: the candidate cameras are locked ``FOR UPDATE SKIP LOCKED``, so claimers take
    disjoint sets, and each lease is taken by a conditional update (still expired?) that READ
    COMMITTED re-checks against a renewal committed meanwhile."""
    if room <= 0:
        return {}
    now = await db_now_us(session)
    query = (select(Camera.id).outerjoin(CameraLease, (CameraLease.camera_id == Camera.id) & (CameraLease.role == role))
             .where(*leasable(role), or_(CameraLease.camera_id.is_(None), CameraLease.expires_us < now))
             .order_by(Camera.id).limit(room))
    if _postgres(session):
        query = query.with_for_update(of=Camera, skip_locked=True)
    candidates = list((await session.scalars(query)).all())
    taken: dict[int, int] = {}
    expires = now + int(ttl_s * 1e6)
    for cam_id in candidates:
        gen = await session.scalar(
            update(CameraLease).where(CameraLease.camera_id == cam_id, CameraLease.role == role,
                                      CameraLease.expires_us < now)
            .values(node_id=node_id, generation=CameraLease.generation + 1, expires_us=expires, moving_to=None)
            .returning(CameraLease.generation))
        if gen is None:
            gen = await session.scalar(
                insert_for(session)(CameraLease).values(camera_id=cam_id, role=role, node_id=node_id, generation=1,
                                                     expires_us=expires, moving_to=None)
                .on_conflict_do_nothing(index_elements=["camera_id", "role"]).returning(CameraLease.generation))
        if gen is not None:
            taken[cam_id] = int(gen)
            await _began(session, cam_id, role, int(gen), node_id, now)
    return taken


async def next_expiry_in_s(session: AsyncSession, node_id: str, within_s: float, role: str = "recorder") -> float | None:
    """Seconds until the first lease of ``role`` held by another node runs out, if one does within
    ``within_s`` (the database's clock). A running node renews its leases every heartbeat to a
    time-to-live ahead, so a lease that runs out within one heartbeat is one whose node has
    missed two or more: a crash, whose cameras a node with room claims at that moment rather than
    at its next heartbeat (:meth:`LeaseKeeper.tick`)."""
    now = await db_now_us(session)
    first = await session.scalar(select(func.min(CameraLease.expires_us)).where(
        CameraLease.role == role, CameraLease.node_id != node_id, CameraLease.expires_us >= now,
        CameraLease.expires_us < now + int(within_s * 1e6)))
    return None if first is None else (first - now) / 1e6


async def _began(session: AsyncSession, camera_id: int, role: str, generation: int, node_id: str,
                 since_us: int) -> None:
    """Write down when a generation of a lease began (:class:`LeaseGeneration`). Generations start
    again at 1 only after the lease row was deleted (``nodes forget``), whose history goes with it."""
    await session.execute(
        insert_for(session)(LeaseGeneration).values(camera_id=camera_id, role=role, generation=generation,
                                                   node_id=node_id, since_us=since_us)
        .on_conflict_do_update(index_elements=["camera_id", "role", "generation"],
                               set_={"node_id": node_id, "since_us": since_us}))


async def hand_over(session: AsyncSession, node_id: str, camera_id: int, ttl_s: float,
                    role: str = "recorder") -> str | None:
    """The holder has stopped recording (reading) a camera asked to move: give the lease to its
    target (generation + 1). Returns the target, or None if there was no move to make."""
    now = await db_now_us(session)
    row = (await session.execute(
        update(CameraLease).where(CameraLease.camera_id == camera_id, CameraLease.role == role,
                                  CameraLease.node_id == node_id, CameraLease.moving_to.is_not(None))
        .values(node_id=CameraLease.moving_to, generation=CameraLease.generation + 1,
                expires_us=now + int(ttl_s * 1e6), moving_to=None)
        .returning(CameraLease.node_id, CameraLease.generation))).first()
    if row is None:
        return None
    await _began(session, camera_id, role, int(row.generation), row.node_id, now)
    return row.node_id


async def release(session: AsyncSession, node_id: str, camera_ids: list[int] | None = None,
                  role: str | None = None) -> int:
    """Let the node's leases (of every role, or of ``role``; of every camera, or of
    ``camera_ids``) go at once: any node may claim them now. Returns how many."""
    query = update(CameraLease).where(CameraLease.node_id == node_id)
    if camera_ids is not None:
        query = query.where(CameraLease.camera_id.in_(camera_ids))
    if role is not None:
        query = query.where(CameraLease.role == role)
    result = await session.execute(query.values(expires_us=0, moving_to=None))
    return result.rowcount or 0


async def stop(session: AsyncSession, node_id: str) -> int:
    """A clean stop: release every lease (the others take them at their next claim) and mark the
    node stopped. Call after the recorders have finalised their last segments."""
    released = await release(session, node_id)
    await session.execute(update(NodeRow).where(NodeRow.id == node_id).values(stopped_us=_now(session)))
    return released


async def expire(session: AsyncSession, ttl_s: float) -> list[str]:
    """The nodes that stopped heartbeating (no heartbeat for ``ttl_s``, not stopped cleanly): their
    leases are expired too (already past by then, set to 0 so that it shows) and any node may
    claim them. Returns those nodes' ids."""
    now = await db_now_us(session)
    lost = list((await session.scalars(select(NodeRow.id).where(
        NodeRow.stopped_us.is_(None), NodeRow.heartbeat_us < now - int(ttl_s * 1e6)))).all())
    if lost:
        await session.execute(update(CameraLease).where(CameraLease.node_id.in_(lost),
                                                        CameraLease.expires_us < now).values(expires_us=0))
    return lost


async def check_fence(session: AsyncSession, camera_id: int, fence: Fence, ends_us: int | None = None) -> Late | None:
    """Refuse (:class:`Fenced`) unless the camera's lease of ``fence.role`` is ``fence``'s node
    and generation (returns None), or, given ``ends_us`` (when the segment or read ended, the
    node's clock), the work ended before the next generation began (returns :class:`Late`).

    Late: a node cut off from the database keeps recording while its lease runs out and another
    node takes the camera; what it recorded before the taker's claim exists nowhere else and
    cannot overlap footage of the taker (whose ffmpeg starts after its claim) or of any holder
    after it. The fence's own generation must have been this node's (:class:`LeaseGeneration`),
    and the next generation's start must be known: a lease taken before that history was kept
    fences as before. Comparing ``ends_us`` with the database's clock assumes the nodes keep NTP
    time (docs/deploy.md); the catalogue also refuses a late segment that overlaps a catalogued
    one (storage.catalogue.commit_segment).

    Inside the transaction that catalogues a segment (stores a plate read). On PostgreSQL the lease row is read
    ``FOR SHARE``: a concurrent claim or move waits for this transaction (or this one for it), so
    no segment is catalogued under a generation that changed before the commit."""
    query = select(CameraLease.node_id, CameraLease.generation).where(CameraLease.camera_id == camera_id,
                                                                       CameraLease.role == fence.role)
    if _postgres(session):
        query = query.with_for_update(read=True)
    row = (await session.execute(query)).first()
    if row is not None and row.node_id == fence.node_id and row.generation == fence.generation:
        return None
    if row is not None and ends_us is not None and row.generation > fence.generation:
        history = {gen: (node, since) for gen, node, since in (await session.execute(
            select(LeaseGeneration.generation, LeaseGeneration.node_id, LeaseGeneration.since_us).where(
                LeaseGeneration.camera_id == camera_id, LeaseGeneration.role == fence.role,
                LeaseGeneration.generation.in_([fence.generation, fence.generation + 1])))).all()}
        own, following = history.get(fence.generation), history.get(fence.generation + 1)
        if own is not None and own[0] == fence.node_id and following is not None and ends_us <= following[1]:
            return Late(int(row.generation), row.node_id, following[1])
    held = f"node {row.node_id}, generation {row.generation}" if row else "no lease"
    what = "segment recorded" if fence.role == "recorder" else f"{fence.role} work done"
    raise Fenced(f"camera {camera_id}: {what} under node {fence.node_id}, generation "
                 f"{fence.generation}; the lease is now {held}")


async def move(session: AsyncSession, camera_id: int, to_node: str, ttl_s: float, role: str = "recorder") -> str:
    """Ask for a camera to be recorded (``role`` anpr: read) by ``to_node``. If a live node holds
    it, the holder hands over after finalising its segment (its tracked vehicles); else the
    lease goes to the target at once. Returns "asked" or "moved"."""
    leasable(role)
    if await session.get(Camera, camera_id) is None:
        raise NotFound(f"camera {camera_id} does not exist")
    target = await session.get(NodeRow, to_node)
    if target is None:
        raise NotFound(f"node {to_node} does not exist")
    if role not in target.roles.split(","):
        raise Invalid(f"node {to_node} has no {role} role ({target.roles})")
    now = await db_now_us(session)
    if target.stopped_us is not None or now - target.heartbeat_us > ttl_s * 1e6:
        raise Conflict(f"node {to_node} is not running")
    lease = await session.get(CameraLease, (camera_id, role), with_for_update=_postgres(session))
    if lease is not None and lease.node_id == to_node:
        return "moved"
    if lease is not None and lease.expires_us >= now:
        lease.moving_to = to_node
        return "asked"
    if lease is None:
        lease = CameraLease(camera_id=camera_id, role=role, node_id=to_node, generation=1,
                            expires_us=now + int(ttl_s * 1e6))
        session.add(lease)
    else:
        lease.node_id, lease.generation = to_node, lease.generation + 1
        lease.expires_us, lease.moving_to = now + int(ttl_s * 1e6), None
    await session.flush()
    await _began(session, camera_id, role, lease.generation, to_node, now)
    return "moved"


async def forget(session: AsyncSession, node_id: str, ttl_s: float) -> tuple[int, list[int]]:
    """Remove a node that is gone for good (``controlroom nodes forget``): its row, its camera
    leases (expired: any node claims those cameras, as after a crash) and its running jobs, given
    back to the queue. Refused (:class:`Conflict`) while its heartbeat is fresh: a running node
    is stopped, not forgotten. Returns (leases removed, jobs given back)."""
    row = await session.get(NodeRow, node_id, with_for_update=_postgres(session))
    if row is None:
        raise NotFound(f"node {node_id} does not exist")
    now = await db_now_us(session)
    if row.stopped_us is None and now - row.heartbeat_us <= ttl_s * 1e6:
        raise Conflict(f"node {node_id} is running (heartbeat {(now - row.heartbeat_us) / 1e6:.0f} s ago): stop it "
                       "first; only a node that is stopped or lost can be forgotten")
    gone = select(CameraLease.camera_id, CameraLease.role).where(CameraLease.node_id == node_id)
    await session.execute(delete(LeaseGeneration).where(  # generations of these leases start again at 1
        tuple_(LeaseGeneration.camera_id, LeaseGeneration.role).in_(gone)))
    leases_removed = (await session.execute(delete(CameraLease).where(CameraLease.node_id == node_id))).rowcount or 0
    given_back = await jobs.requeue_node(session, node_id, f"its node {node_id} was forgotten; queued again")
    await session.delete(row)
    await session.flush()
    return leases_removed, given_back


async def list_nodes(session: AsyncSession, ttl_s: float) -> list[NodeInfo]:
    now = await db_now_us(session)
    counts = {(node, role): n for node, role, n in (await session.execute(
        select(CameraLease.node_id, CameraLease.role, func.count()).group_by(CameraLease.node_id, CameraLease.role)))}
    out = []
    for row in (await session.scalars(select(NodeRow).order_by(NodeRow.id))).all():
        state = ("stopped" if row.stopped_us is not None
                 else "lost" if now - row.heartbeat_us > ttl_s * 1e6 else "running")
        out.append(NodeInfo(row.id, tuple(r for r in row.roles.split(",") if r), row.capacity, row.host, row.pid,
                            row.started_us, row.heartbeat_us, row.stopped_us, counts.get((row.id, "recorder"), 0),
                            counts.get((row.id, "anpr"), 0), row.anpr_capacity, state))
    return out


async def leases(session: AsyncSession, role: str = "recorder") -> dict[int, tuple[str, int, int]]:
    """camera id -> (node id, generation, expires_us), every lease of ``role``."""
    rows = await session.execute(select(CameraLease.camera_id, CameraLease.node_id, CameraLease.generation,
                                        CameraLease.expires_us).where(CameraLease.role == role))
    return {cam: (node, gen, exp) for cam, node, gen, exp in rows.all()}


async def recorder_of(session: AsyncSession, camera_id: int) -> tuple[str, str] | None:
    """(node id, relay URL) of the node holding the camera's recorder lease, expired or not
    (a lost holder's relay fails to answer: the caller says so), or None if no node records it."""
    row = (await session.execute(
        select(NodeRow.id, NodeRow.relay_url).join(CameraLease, CameraLease.node_id == NodeRow.id)
        .where(CameraLease.camera_id == camera_id, CameraLease.role == "recorder"))).first()
    return (row.id, row.relay_url) if row is not None else None


async def unleased_cameras(session: AsyncSession, role: str = "recorder") -> list[int]:
    """Cameras of ``role`` with no live lease: nobody records them (reads their plates)."""
    now = await db_now_us(session)
    return list((await session.scalars(
        select(Camera.id).outerjoin(CameraLease, (CameraLease.camera_id == Camera.id) & (CameraLease.role == role))
        .where(*leasable(role), or_(CameraLease.camera_id.is_(None), CameraLease.expires_us < now))
        .order_by(Camera.id))).all())


def _ids(items, limit: int = 20) -> str:
    items = list(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- balance -------------------------------------------------------------------------------
BALANCE_STEP = 5  # cameras a node asks for per heartbeat: a join moves cameras a few at a time


def plan_balance(me: str, load: dict[str, int], capacity: dict[str, int], limit: int = BALANCE_STEP) -> dict[str, int]:
    """How many cameras ``me`` asks of each other node so that the cameras are shared by capacity.

    ``load``: cameras held (or on their way) per live recorder node, ``me`` included. Each node's
    fair share is its capacity's part of the total, rounded up; ``me`` asks only for what it
    lacks of its share, only of nodes above theirs (the most loaded first) and only their
    excess, at most ``limit`` per step: a node joining takes its share and moves no other
    camera. Pure: tested without a database."""
    total, room = sum(load.values()), sum(capacity.get(n, 0) for n in load)
    if total == 0 or room == 0:
        return {}

    def share(node: str) -> int:
        return min(capacity.get(node, 0), -(-total * capacity.get(node, 0) // room))

    want = min(share(me) - load.get(me, 0), limit)
    asks: dict[str, int] = {}
    for node in sorted(load, key=lambda n: (share(n) - load[n], n)):
        if want <= 0:
            break
        excess = load[node] - share(node)
        if node == me or excess <= 0:
            continue
        asks[node] = min(excess, want)
        want -= asks[node]
    return asks


async def balance(session: AsyncSession, node_id: str, ttl_s: float, limit: int = BALANCE_STEP,
                  role: str = "recorder") -> int:
    """Ask the nodes of ``role`` above their share to hand cameras to this one (``moving_to``:
    each holder finalises its segment, then hands over, as for a move). Returns how many were
    asked for."""
    now = await db_now_us(session)
    live = {n.id: capacity_of(n, role) for n in (await session.scalars(select(NodeRow).where(
        NodeRow.stopped_us.is_(None), NodeRow.heartbeat_us >= now - int(ttl_s * 1e6)))).all()
        if role in n.roles.split(",")}
    if node_id not in live or len(live) < 2:
        return 0
    target = func.coalesce(CameraLease.moving_to, CameraLease.node_id)
    rows = (await session.execute(select(target, func.count()).where(CameraLease.role == role,
                                                                     CameraLease.expires_us >= now)
                                  .group_by(target))).all()
    load = dict.fromkeys(live, 0)
    for node, count in rows:
        if node in load:
            load[node] += count
    asked = 0
    for donor, count in plan_balance(node_id, load, live, limit).items():
        chosen = select(CameraLease.camera_id).where(CameraLease.node_id == donor, CameraLease.role == role,
                                                     CameraLease.moving_to.is_(None)) \
            .order_by(CameraLease.camera_id.desc()).limit(count)
        result = await session.execute(update(CameraLease).where(CameraLease.role == role,
                                                                 CameraLease.camera_id.in_(chosen))
                                       .values(moving_to=node_id))
        asked += result.rowcount or 0
    return asked


# -- the loop of one node --------------------------------------------------------------------
class RoleLeases:
    """The cameras one node holds for one role, as of its keeper's last step: what that role's
    worker follows (the recorder supervisor for ``recorder``, live reading for ``anpr``).

    ``held`` is camera id -> :class:`Held`; ``on_change`` is called after a step that changed it;
    :meth:`fence` is the token a camera's work is stored under; :meth:`hand_over` gives a camera
    asked to move to its target once the worker has stopped it."""

    def __init__(self, keeper: LeaseKeeper, role: str, capacity: int) -> None:
        self.keeper, self.role, self.capacity = keeper, role, capacity
        self.held: dict[int, Held] = {}
        self.on_change: Callable[[], Awaitable[None]] | None = None

    @property
    def node_id(self) -> str:
        return self.keeper.node_id

    def fence(self, camera_id: int) -> Fence:
        return Fence(self.node_id, self.held[camera_id].generation, self.role)

    def moving(self) -> set[int]:
        """The cameras asked to move to another node (a move, or balancing)."""
        return {cam for cam, held in self.held.items() if held.moving_to}

    async def hand_over(self, camera_id: int) -> None:
        async with transaction(self.keeper.sessions) as session:
            target = await hand_over(session, self.node_id, camera_id, self.keeper.ttl_s, self.role)
        self.held.pop(camera_id, None)
        if target:
            log.warning("camera %s: %s lease handed over by node %s to node %s", camera_id, self.role,
                        self.node_id, target)


class LeaseKeeper:
    """Heartbeat, renewal and claims of one node, one step every ``heartbeat_s``.

    ``leases`` holds a :class:`RoleLeases` for each of the node's roles that lease cameras
    (:data:`LEASED_ROLES`: ``recorder`` up to ``capacity`` cameras, ``anpr`` up to
    ``anpr_capacity``); one heartbeat renews them all, then each role with room claims and
    balances. ``held`` is the recorder role's (empty on a node without it). Every node heartbeats.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], node_id: str, roles: tuple[str, ...], *,
        capacity: int, heartbeat_s: float, ttl_s: float, anpr_capacity: int = 0, relay_url: str = "",
    ) -> None:
        self.sessions, self.node_id, self.roles = sessions, node_id, roles
        self.relay_url = relay_url
        self.heartbeat_s, self.ttl_s = heartbeat_s, ttl_s
        self.capacity = capacity if "recorder" in roles else 0
        self.anpr_capacity = anpr_capacity if "anpr" in roles else 0
        caps = {"recorder": self.capacity, "anpr": self.anpr_capacity}
        self.leases = {role: RoleLeases(self, role, caps[role]) for role in LEASED_ROLES if role in roles}
        self.last_ok_us: int | None = None  # process clock of the last successful step
        self.error = ""  # why the last step failed ("" when it worked)
        self.balance = True  # ask loaded nodes for a share when this one has room
        # One step at a time: the heartbeat's, or an early claim of leases running out between two.
        self._stepping = asyncio.Lock()
        self._early: dict[str, asyncio.Task[None]] = {}

    @property
    def held(self) -> dict[int, Held]:
        leases = self.leases.get("recorder")
        return leases.held if leases is not None else {}

    async def start(self) -> None:
        async with transaction(self.sessions) as session:
            await register(session, self.node_id, self.roles, self.capacity, ttl_s=self.ttl_s,
                           anpr_capacity=self.anpr_capacity, relay_url=self.relay_url)
            for role in LEASED_ROLES:  # started again without a role: its leases go to the others
                if role not in self.leases:
                    await release(session, self.node_id, role=role)
        log.info("node %s: registered (roles %s, capacity %d, ANPR capacity %d)", self.node_id,
                 ",".join(self.roles), self.capacity, self.anpr_capacity)

    async def tick(self) -> None:
        """One step: heartbeat and renew, then for each role claim free cameras up to its
        capacity (or ask for a share). Raises on a database error (the caller's loop logs it);
        ``held`` is then unchanged."""
        async with self._stepping:
            await self._step()

    async def _step(self) -> None:
        before = {role: dict(leases.held) for role, leases in self.leases.items()}
        async with transaction(self.sessions) as session:
            held = await heartbeat(session, self.node_id, self.ttl_s)
        claimed: dict[str, dict[int, int]] = {}
        for role, leases in self.leases.items():
            room = leases.capacity - len(held.get(role, {}))
            if room <= 0:
                continue
            async with transaction(self.sessions) as session:
                claimed[role] = await claim(session, self.node_id, room, self.ttl_s, role)
                if not claimed[role] and self.balance:
                    asked = await balance(session, self.node_id, self.ttl_s, role=role)
                    if asked:
                        log.warning("node %s: asked the other nodes for %d cameras (its %s share by capacity)",
                                    self.node_id, asked, role)
                if room > len(claimed[role]):
                    soon = await next_expiry_in_s(session, self.node_id, self.heartbeat_s, role)
                    if soon is not None:
                        self._claim_early(role, soon)
        for role, leases in self.leases.items():
            mine, taken = held.get(role, {}), claimed.get(role, {})
            self._took(role, taken)
            lost = set(before[role]) - set(mine)
            if lost:
                log.warning("node %s: lost the %s leases of %d cameras (another node holds them now): %s",
                            self.node_id, role, len(lost), _ids(str(cam) for cam in sorted(lost)))
            leases.held = {**mine, **{cam: Held(gen, None) for cam, gen in taken.items()}}
        self.last_ok_us, self.error = now_us(), ""
        for role, leases in self.leases.items():
            if leases.held != before[role] and leases.on_change is not None:
                await leases.on_change()

    def _took(self, role: str, taken: dict[int, int], how: str = "") -> None:
        if taken:  # one line per step: a node starting in a 1,000-camera site takes hundreds at once
            log.warning("node %s: took the %s leases of %d cameras%s: %s", self.node_id, role, len(taken), how,
                        _ids(f"{cam} (generation {gen})" for cam, gen in sorted(taken.items())))

    def _claim_early(self, role: str, in_s: float) -> None:
        """Claim at the moment another node's leases run out (:func:`next_expiry_in_s`), not at
        the next heartbeat: a crashed node's cameras record again up to a heartbeat sooner."""
        if (task := self._early.get(role)) is not None and not task.done():
            task.cancel()
        self._early[role] = asyncio.create_task(self._claim_at(role, in_s), name=f"node {self.node_id}: early claim")

    async def _claim_at(self, role: str, in_s: float) -> None:
        leases = self.leases[role]
        try:
            while in_s is not None:
                await asyncio.sleep(in_s + 0.05)  # the claim takes a lease once its expiry is past
                async with self._stepping:
                    room = leases.capacity - len(leases.held)
                    if room <= 0:
                        return
                    async with transaction(self.sessions) as session:
                        taken = await claim(session, self.node_id, room, self.ttl_s, role)
                        in_s = await next_expiry_in_s(session, self.node_id, self.heartbeat_s, role)
                    if taken:
                        self._took(role, taken, " as they ran out")
                        leases.held = {**leases.held, **{cam: Held(gen, None) for cam, gen in taken.items()}}
                        if leases.on_change is not None:
                            await leases.on_change()
        except Exception:  # the next heartbeat claims them: later, not lost
            log.exception("node %s: claiming the %s leases that ran out failed; the next heartbeat claims them",
                          self.node_id, role)

    async def hand_over(self, camera_id: int, role: str = "recorder") -> None:
        await self.leases[role].hand_over(camera_id)

    async def stop(self) -> None:
        """Release every lease and mark the node stopped (after the recorders and readers have stopped)."""
        for task in self._early.values():
            task.cancel()
        async with transaction(self.sessions) as session:
            released = await stop(session, self.node_id)
        for leases in self.leases.values():
            leases.held = {}
        log.warning("node %s: stopped; %d camera leases released to the other nodes", self.node_id, released)


__all__ = [
    "LEASED_ROLES", "ROLES", "RoleLeases", "CameraLease", "capacity_of", "leasable", "balance", "plan_balance", "Fence", "Fenced", "Held", "Late", "LeaseGeneration", "LeaseKeeper", "NodeInfo", "next_expiry_in_s", "NodeRow", "check_fence", "claim",
    "db_now_us", "expire", "recorder_of", "forget", "hand_over", "heartbeat", "leases", "list_nodes", "load_or_create_node_id", "move",
    "parse_roles", "register", "release", "stop", "unleased_cameras", "valid_node_id",
]
