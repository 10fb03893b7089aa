"""Reading and checking the audit trail: /api/v1/audit... (supervisors, administrators).

Reading the trail is itself audited. Nothing here can change it.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.auth import actor, every_camera
from controlroom.context import AUDIT, KEYS, SESSIONS, SETTINGS
from controlroom.contract import Flag, Name, Query, Time, limit, query_of
from controlroom.permissions import Disclosure, Permission, requires
from storage import audit

routes = web.RouteTableDef()
MAX_LIMIT = 5000


class AuditQuery(Query):
    start_us: Time | None = Field(None, alias="from", description="entries at or after this time")
    end_us: Time | None = Field(None, alias="to", description="entries before this time")
    action: Name | None = None
    actor: Name | None = None
    limit: int = limit(500, MAX_LIMIT)
    newest: Flag = Field(False, description="the newest entries first (else the oldest first, in chain order)")


@routes.get("/api/v1/audit")
@requires(Permission.AUDIT_READ, discloses=Disclosure.PERSONAL, action="audit.read", cameras=every_camera, query=AuditQuery)
async def list_entries(request: web.Request) -> web.Response:
    """``?from=ISO&to=ISO&action=&actor=&limit=&newest=`` (default 500, at most 5000), oldest
    first, or with ``newest=1`` the newest entries first."""
    q = request.query
    p = query_of(request, AuditQuery)
    async with request.app[SESSIONS]() as session:
        if p.newest:
            rows = [audit.entry_json(e) for e in await audit.latest_entries(
                session, p.start_us, p.end_us, action=p.action, actor=p.actor, limit=p.limit)]
        else:
            rows = [
                audit.entry_json(e)
                async for e in audit.entries(session, p.start_us, p.end_us, action=p.action, actor=p.actor,
                                             limit=p.limit)
            ]
    disclosure.note(request, "audit", start=q.get("from"), end=q.get("to"), action_filter=q.get("action"),
                    actor_filter=q.get("actor"), returned=len(rows))
    return web.json_response({"entries": rows})


@routes.get("/api/v1/audit/verify")
@requires(Permission.AUDIT_READ, cameras=every_camera)
async def verify(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[SESSIONS]() as session:
        report = await audit.verify_all(session, request.app[KEYS], settings.audit_anchor_file,
                                        settings.audit_digest_dir)
    await request.app[AUDIT].append(actor(request), "audit.verify", "audit", ok=report.ok,
                                    first_bad_seq=report.first_bad_seq)
    return web.json_response({
        "ok": report.ok,
        "entries": report.chain.entries,
        "head_hash": report.chain.head_hash,
        "anchors_checked": report.anchors_checked,
        "digests_checked": report.digests_checked,
        "first_bad_seq": report.first_bad_seq,
        "problems": report.problems,
    })
