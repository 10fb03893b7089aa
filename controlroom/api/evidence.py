"""Evidence for the police over HTTP: /api/v1/evidence/...

Who sees what: a police officer (EVIDENCE_REQUEST) or an operator submitting on their behalf
(EXPORT) sees only the requests they submitted; a supervisor (APPROVE) sees all. Someone else's
request answers 404, never 403, so its existence does not leak. Routes shared by both kinds of
user declare AUTHENTICATED and check the right in the handler (:func:`_scope`).

Downloads are streamed from disk by ``web.FileResponse`` (sendfile, HTTP Range, If-Range);
a request that starts at byte 0 is a new download: it enters the custody log, the disclosure
register and the audit trail. A Range request further in resumes one and is audited.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from controlroom.auth import actor, allowed_camera_ids, can_access_camera, current_user
from controlroom.context import AUDIT, EVIDENCE, KEYS, SESSIONS, SETTINGS
from controlroom.errors import Forbidden, json_body
from controlroom.evidence.plan import build_plan, findings
from controlroom.evidence.shapes import register_json, request_json
from controlroom.permissions import Permission, requires
from controlroom.timefmt import iso_to_us, us_to_iso
from storage import Invalid, NotFound, audit, inventory
from storage.db import now_us, transaction
from storage.evidence import (
    DAY_US,
    REQUIRED_TEXT,
    DownloadLink,
    EvidenceRequest,
    JobState,
    RequestState,
    WindowSpec,
    active_job,
    add_custody,
    add_link,
    close_request,
    create_request,
    custody_line,
    custody_log,
    decide,
    find_link,
    get_request,
    latest_job,
    list_register,
    list_requests,
    move,
    queue_export,
    register_release,
)

routes = web.RouteTableDef()
PREFIX = "/api/v1/evidence"


async def _refuse(request: web.Request, message: str) -> None:
    """Record the refusal (as ``evidence.denied``: the middleware's ``access.denied`` is for
    routes the role may not call at all), then answer 403."""
    await request.app[AUDIT].append(actor(request), "evidence.denied", f"{request.method} {request.path}"[:400],
                                    reason=message)
    raise Forbidden(message)


async def _scope(request: web.Request) -> str | None:
    """None: the caller sees every request (supervisor); else only those they submitted."""
    user = current_user(request)
    if user.can(Permission.APPROVE):
        return None
    if user.can(Permission.EVIDENCE_REQUEST) or user.can(Permission.EXPORT):
        return user.username
    await _refuse(request, "evidence requests need the evidence_request, export or approve right")
    raise AssertionError("unreachable")


def _request_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise NotFound(f"no evidence request {raw}")
    return int(raw)


async def _show(session, req: EvidenceRequest) -> dict[str, Any]:
    return request_json(req, await latest_job(session, req.id))


@routes.post(f"{PREFIX}/requests")
@requires(Permission.AUTHENTICATED)
async def submit(request: web.Request) -> web.Response:
    """Record a request and place its hold at once (same transaction), with the findings."""
    user = current_user(request)
    if not (user.can(Permission.EVIDENCE_REQUEST) or user.can(Permission.EXPORT)):
        await _refuse(request, "submitting an evidence request needs the evidence_request or export right")
    body = await json_body(request)
    unknown = set(body) - set(REQUIRED_TEXT) - {"windows"}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    windows_in = body.get("windows")
    if not isinstance(windows_in, list) or not windows_in:
        raise Invalid("windows: a list of {camera, from, to} is required")
    for key in REQUIRED_TEXT:
        if not isinstance(body.get(key, ""), str):
            raise Invalid(f"{key}: must be text")
    settings = request.app[SETTINGS].evidence
    async with transaction(request.app[SESSIONS]) as session:
        windows = []
        for n, w in enumerate(windows_in):
            if not isinstance(w, dict) or set(w) - {"camera", "from", "to"} or not {"camera", "from", "to"} <= set(w):
                raise Invalid(f"windows[{n}]: needs exactly camera, from and to")
            try:
                cam = await inventory.get_camera(session, str(w["camera"]))
                if not await can_access_camera(request, cam.id):  # narrowed users: as if absent
                    raise NotFound(str(w["camera"]))
            except NotFound:
                raise Invalid(f"windows[{n}]: no camera {w['camera']}") from None
            windows.append(WindowSpec(cam.id, iso_to_us(str(w["from"]), f"windows[{n}].from"),
                                      iso_to_us(str(w["to"]), f"windows[{n}].to")))
        req = await create_request(
            session, requested_by=actor(request), fields=body, windows=windows,
            hold_review_us=now_us() + settings.hold_review_days * DAY_US,
            max_window_us=int(settings.max_window_hours * 3600 * 1_000_000),
        )
        req.findings = findings(await build_plan(session, req))
        await add_custody(session, req.id, actor(request), "request.submitted", request.app[KEYS].sign,
                          crime_reference=req.crime_reference, officer=req.officer_name, force=req.force)
        await audit.append(session, actor(request), "evidence.request", f"evidence:{req.id}",
                           crime_reference=req.crime_reference, force=req.force, hold=req.hold_id,
                           windows=[{"camera": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us)}
                                    for w in windows])
        data = await _show(session, req)
    return web.json_response(data, status=201)


@routes.get(f"{PREFIX}/requests")
@requires(Permission.AUTHENTICATED)
async def list_all(request: web.Request) -> web.Response:
    owner = await _scope(request)
    async with request.app[SESSIONS]() as session:
        rows = [await _show(session, r) for r in await list_requests(session, owner=owner)]
    await request.app[AUDIT].append(actor(request), "evidence.list", "evidence", count=len(rows))
    return web.json_response({"requests": rows})


@routes.get(f"{PREFIX}/requests/{{id}}")
@requires(Permission.AUTHENTICATED)
async def show(request: web.Request) -> web.Response:
    owner = await _scope(request)
    async with request.app[SESSIONS]() as session:
        req = await get_request(session, _request_id(request), owner=owner)
        return web.json_response(await _show(session, req))


async def _decide(request: web.Request, approve: bool) -> web.Response:
    body = await json_body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason: a decision needs a reason")
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), for_update=True)
        if req.requested_by == actor(request):
            raise Invalid("a request cannot be decided by the person who submitted it")
        req.findings = findings(await build_plan(session, req))  # the approver sees them as of now
        job = await decide(session, req, by=actor(request), approve=approve, reason=reason)
        verb = "approved" if approve else "refused"
        await add_custody(session, req.id, actor(request), f"request.{verb}", request.app[KEYS].sign, reason=reason)
        await audit.append(session, actor(request), f"evidence.{'approve' if approve else 'refuse'}",
                           f"evidence:{req.id}", reason=reason, job=job.id if job else None)
        data = await _show(session, req)
    if approve:
        request.app[EVIDENCE].wake()
    return web.json_response(data)


@routes.post(f"{PREFIX}/requests/{{id}}/approve")
@requires(Permission.APPROVE)
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, True)


@routes.post(f"{PREFIX}/requests/{{id}}/refuse")
@requires(Permission.APPROVE)
async def refuse(request: web.Request) -> web.Response:
    return await _decide(request, False)


@routes.post(f"{PREFIX}/requests/{{id}}/export")
@requires(Permission.EXPORT)
async def export_again(request: web.Request) -> web.Response:
    """Queue the export again after a failure or cancellation."""
    owner = await _scope(request)
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), owner=owner, for_update=True)
        job = await queue_export(session, req, by=actor(request))
        await audit.append(session, actor(request), "evidence.export_queue", f"evidence:{req.id}", job=job.id)
        data = await _show(session, req)
    request.app[EVIDENCE].wake()
    return web.json_response(data, status=202)


@routes.post(f"{PREFIX}/requests/{{id}}/cancel")
@requires(Permission.EXPORT)
async def cancel_export(request: web.Request) -> web.Response:
    owner = await _scope(request)
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), owner=owner, for_update=True)
        job = await active_job(session, req.id)
        if job is None:
            raise Invalid(f"evidence request {req.id} has no export queued or running")
        if job.state == JobState.QUEUED.value:
            job.state, job.finished_us, job.error = JobState.CANCELLED.value, now_us(), "cancelled before it started"
        else:
            job.cancel_requested = True
        await audit.append(session, actor(request), "evidence.export_cancel", f"evidence:{req.id}", job=job.id)
        job_id = job.id
    request.app[EVIDENCE].cancel_local(job_id)
    async with request.app[SESSIONS]() as session:
        return web.json_response(await _show(session, await get_request(session, req.id)), status=202)


@routes.post(f"{PREFIX}/requests/{{id}}/close")
@requires(Permission.APPROVE)
async def close(request: web.Request) -> web.Response:
    """Close the request: its hold is released and a review date recorded."""
    body = await json_body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise Invalid("reason: must be text")
    settings = request.app[SETTINGS].evidence
    review_us = (iso_to_us(body["review"], "review") if body.get("review")
                 else now_us() + settings.close_review_days * DAY_US)
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), for_update=True)
        await close_request(session, req, by=actor(request), reason=reason, review_us=review_us)
        await add_custody(session, req.id, actor(request), "request.closed", request.app[KEYS].sign,
                          reason=reason, review=us_to_iso(review_us))
        await audit.append(session, actor(request), "evidence.close", f"evidence:{req.id}", reason=reason,
                           review=us_to_iso(review_us), hold=req.hold_id)
        data = await _show(session, req)
    return web.json_response(data)


async def _serve(request: web.Request, req: EvidenceRequest, *, via: str, who: str,
                 first_use: bool = False) -> web.StreamResponse:
    """Stream the package. A GET from byte 0, the first GET of a link, or any GET by someone who
    never downloaded this package before is a release (custody, register, audit); other Range
    GETs resume one (audited)."""
    settings = request.app[SETTINGS]
    path = settings.evidence_root / req.package_path if req.package_path else None
    if req.state not in (RequestState.READY.value, RequestState.DOWNLOADED.value) or path is None or not path.is_file():
        raise NotFound(f"evidence request {req.id} has no package to download")
    ranged = request.headers.get("Range", "").strip()
    # A HEAD (a download manager sizing the file) releases nothing.
    fresh = request.method == "GET" and (not ranged or ranged.replace(" ", "").startswith("bytes=0-"))
    async with transaction(request.app[SESSIONS]) as session:
        locked = await get_request(session, req.id, for_update=True)
        if request.method == "GET" and not fresh:
            fresh = first_use or not any(e.action == "package.downloaded" and e.actor == who
                                         for e in await custody_log(session, req.id))
        if fresh:
            move(locked, RequestState.DOWNLOADED)
            what = {"exhibit": locked.exhibit_ref, "manifest_sha256": locked.manifest_sha256,
                    "package_bytes": locked.package_bytes,
                    "windows": [{"camera": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us)}
                                for w in locked.windows]}
            await register_release(session, locked, released_by=who, what=what)
            await add_custody(session, locked.id, who, "package.downloaded", request.app[KEYS].sign, via=via,
                              address=request.remote or "", manifest_sha256=locked.manifest_sha256)
        action = "evidence.download" if fresh else ("evidence.download_head" if request.method == "HEAD"
                                                    else "evidence.download_resume")
        await audit.append(session, who, action,
                           f"evidence:{req.id}", via=via, range=ranged or None)
    return web.FileResponse(path, headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{req.exhibit_ref}.zip"',
        "Cache-Control": "no-store",
    })


@routes.get(f"{PREFIX}/requests/{{id}}/package")
@requires(Permission.AUTHENTICATED)
async def download(request: web.Request) -> web.StreamResponse:
    owner = await _scope(request)
    async with request.app[SESSIONS]() as session:
        req = await get_request(session, _request_id(request), owner=owner)
    return await _serve(request, req, via="session", who=actor(request))


@routes.post(f"{PREFIX}/requests/{{id}}/links")
@requires(Permission.AUTHENTICATED)
async def make_link(request: web.Request) -> web.Response:
    """A one-time download link that expires (for a download manager or another machine)."""
    owner = await _scope(request)
    token = secrets.token_urlsafe(32)
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), owner=owner)
        if req.state not in (RequestState.READY.value, RequestState.DOWNLOADED.value):
            raise Invalid(f"evidence request {req.id} is {req.state}: there is no package yet")
        link = await add_link(session, req, token=token, by=actor(request), ttl_s=request.app[SETTINGS].evidence.link_ttl_s)
        await audit.append(session, actor(request), "evidence.link", f"evidence:{req.id}", link=link.id,
                           expires=us_to_iso(link.expires_us))
    return web.json_response({"url": f"{PREFIX}/download/{token}", "expires_utc": us_to_iso(link.expires_us),
                              "one_time": True}, status=201)


@routes.get(f"{PREFIX}/download/{{token}}")
@requires(Permission.PUBLIC)  # the token is the credential: 256 random bits, stored hashed
async def download_by_link(request: web.Request) -> web.StreamResponse:
    ranged = request.headers.get("Range", "").strip()
    fresh = request.method == "GET" and (not ranged or ranged.replace(" ", "").startswith("bytes=0-"))
    async with transaction(request.app[SESSIONS]) as session:
        link: DownloadLink = await find_link(session, request.match_info["token"])
        if link.used_us is not None and fresh:
            await audit.append(session, f"link:{link.created_by}", "evidence.link_reuse_refused",
                               f"evidence:{link.request_id}", link=link.id)
            raise web.HTTPGone(text='{"error": "this one-time link was already used"}', content_type="application/json")
        first_use = link.used_us is None and request.method == "GET"
        if first_use:
            link.used_us = now_us()
        req = await get_request(session, link.request_id)
        who = link.created_by
    return await _serve(request, req, via=f"one-time link {link.id}", who=who, first_use=first_use)


@routes.get(f"{PREFIX}/requests/{{id}}/custody")
@requires(Permission.AUTHENTICATED)
async def custody(request: web.Request) -> web.Response:
    """The whole chain of custody (production and each download) as signed JSON lines."""
    owner = await _scope(request)
    async with request.app[SESSIONS]() as session:
        req = await get_request(session, _request_id(request), owner=owner)
        lines = [custody_line(e) for e in await custody_log(session, req.id)]
    text = "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines)
    return web.Response(text=text, content_type="application/x-ndjson")


@routes.get(f"{PREFIX}/register")
@requires(Permission.APPROVE)
async def register(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rows = [register_json(e) for e in await list_register(session)]
    await request.app[AUDIT].append(actor(request), "evidence.register_read", "evidence:register", count=len(rows))
    return web.json_response({"register": rows})


@routes.get(f"{PREFIX}/cameras")
@requires(Permission.AUTHENTICATED)
async def cameras(request: web.Request) -> web.Response:
    """The cameras one may ask footage of: id, name, site and position only.

    Police need the names to fill in a request but hold no inventory right (they must not
    browse): this list has no stream, state or recording details (docs/design/ui.md)."""
    await _scope(request)
    allowed = await allowed_camera_ids(request)  # None: every camera
    async with request.app[SESSIONS]() as session:
        sites = await inventory.site_names(session)
        cams = await inventory.list_cameras(session)
    return web.json_response({"cameras": [
        {"id": c.id, "name": c.name, "site": sites.get(c.site_id, "") if c.site_id else "", "position": c.position}
        for c in cams if allowed is None or c.id in allowed]})


@routes.get(f"{PREFIX}/public-key")
@requires(Permission.AUTHENTICATED)
async def public_key(request: web.Request) -> web.Response:
    keys = request.app[KEYS]
    return web.json_response({"algorithm": "Ed25519", "pem": keys.public_key_pem().decode(),
                              "fingerprint_sha256": keys.public_key_fingerprint()})
