"""Evidence for the police over HTTP: /api/v1/evidence/...

Who sees what: a police officer (EVIDENCE_REQUEST) or an operator submitting on their behalf
(EXPORT) sees only the requests they submitted; a supervisor (APPROVE) sees all. Someone else's
request answers 404, never 403, so its existence does not leak. Routes shared by both kinds of
user declare AUTHENTICATED and check the right in the handler (:func:`_scope`).

Downloads are streamed from disk by ``web.FileResponse`` (sendfile, HTTP Range, If-Range);
a request that starts at byte 0 is a new download: it enters the custody log, the disclosure
register and the audit trail. A Range request further in resumes one and is audited. A
one-time link sends each byte of the package at most once (``download_by_link``).

Every read of a request, its custody log, the register and the package is a disclosure,
declared on its route and audited by ``controlroom.disclosure``; a user narrowed to some cameras
reaches only requests whose cameras are all theirs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from controlroom import disclosure, jobs, masking
from controlroom.auth import (
    ANONYMOUS,
    USER,
    actor,
    allowed_camera_ids,
    can_access_camera,
    current_user,
)
from controlroom.context import AUDIT, EVIDENCE, KEYS, SESSIONS, SETTINGS
from controlroom.contract import Body, Name, Text, Time, body_of
from controlroom.errors import Forbidden
from controlroom.evidence.plan import build_plan, findings
from controlroom.evidence.shapes import register_json, request_json
from controlroom.permissions import Disclosure, Permission, Pixels, requires
from controlroom.timefmt import us_to_iso
from storage import Conflict, Invalid, NotFound, audit, inventory, ripa
from storage.db import now_us, row_id, transaction
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

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PREFIX = "/api/v1/evidence"
MAX_WINDOWS = 100  # a bound on one request's work (each window is a plan, a hold, an export)


class Window(Body):
    camera: Name | int = Field(description="the camera's id or name")
    start_us: Time = Field(alias="from")
    end_us: Time = Field(alias="to")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EvidenceRequestNew(Body):
    """A request for footage: who asks, under which power, and which cameras when."""

    # The sizes of their columns (storage.evidence.EvidenceRequest), so the document says them.
    officer_name: Annotated[str, Field(max_length=200)] = ""
    collar_number: Annotated[str, Field(max_length=50)] = ""
    force: Annotated[str, Field(max_length=200)] = ""
    crime_reference: Annotated[str, Field(max_length=200)] = ""
    offence: Text = ""
    necessity: Text = ""
    lawful_basis: Text = ""
    authorised_by: Annotated[str, Field(max_length=200)] = ""
    windows: list[Window] = Field(min_length=1, max_length=MAX_WINDOWS)
    directed_surveillance: bool = Field(False, description="the request cites surveillance of a named person")
    ripa_reference: Annotated[str, Field(max_length=100)] = Field("", description="its RIPA authorisation")


class Decision(Body):
    reason: Text = ""
    release_masters: bool = Field(False, description="approving: the package carries the masters of cameras with "
                                                     "privacy masks too (unpainted: they are the evidence)")


class Closing(Body):
    reason: Text = ""
    review_us: Time | None = Field(None, alias="review", description="when to review the closed request")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


async def _refuse(request: web.Request, message: str) -> None:
    """Record the refusal (as ``evidence.denied``: the middleware's ``access.denied`` is for
    routes the role may not call at all), then answer 403."""
    user = current_user(request)
    await request.app[AUDIT].append(user.username, "evidence.denied", f"{request.method} {request.path}"[:400],
                                    reason=message, via=user.via, token=user.token_name or None)
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
    found = row_id(raw)
    if found is None:
        raise NotFound(f"no evidence request {raw[:40]!r}")
    return found


async def _request_cameras(request: web.Request) -> set[int] | None:
    """The cameras of the request in the path (narrowing, controlroom.auth)."""
    request_id = row_id(request.match_info["id"])
    async with request.app[SESSIONS]() as session:
        req = await session.get(EvidenceRequest, request_id) if request_id else None
        return {w.camera_id for w in req.windows} if req is not None else None


async def check_package_masks(request: web.Request, req: EvidenceRequest) -> None:
    """A package is handed out only if its working copies were painted with the privacy masks
    in force now (controlroom.masking, for a user without unmask). Its masters of masked cameras
    are in it only if the approving supervisor released them. Else 409: export it again."""
    await masking.reach(request, {w.camera_id for w in req.windows})  # a link's request is found here
    painted = req.package_masks or {}
    stale = [cid for cid in sorted({w.camera_id for w in req.windows})
             if (active := masking.due(request, cid)) is not None and painted.get(str(cid)) != active.version]
    if stale:
        raise Conflict(f"this package was made before the privacy masks now in force on camera(s) "
                       f"{', '.join(map(str, stale))}; it must be exported again")


def _visible(req: EvidenceRequest, allowed: frozenset[int] | None) -> bool:
    """A narrowed user sees a request only if every camera it names is theirs."""
    return allowed is None or {w.camera_id for w in req.windows} <= allowed


async def _show(request: web.Request, session, req: EvidenceRequest) -> dict[str, Any]:
    """A request as its reader may see it. What the catalogue holds for its windows (gaps,
    clock flags) is for the council's staff who decide and export: police see the request and
    its outcome, not what the council has recorded (issue 11)."""
    data = request_json(req, await latest_job(session, req.id))
    user = current_user(request)
    if not (user.can(Permission.APPROVE) or user.can(Permission.EXPORT)):
        data.pop("findings", None)
    else:  # a request citing surveillance of a named person without a live RIPA authorisation
        data["ripa_warning"] = await ripa.request_warning(session, req.directed_surveillance, req.ripa_reference)
    return data


@routes.post(f"{PREFIX}/requests")
@requires(Permission.AUTHENTICATED, body=EvidenceRequestNew, status=201)
async def submit(request: web.Request) -> web.Response:
    """Record a request and place its hold at once (same transaction), with the findings."""
    user = current_user(request)
    if not (user.can(Permission.EVIDENCE_REQUEST) or user.can(Permission.EXPORT)):
        await _refuse(request, "submitting an evidence request needs the evidence_request or export right")
    new = body_of(request, EvidenceRequestNew)
    body = new.model_dump(include=set(REQUIRED_TEXT))
    max_windows = request.app[SETTINGS].evidence.max_windows
    if len(new.windows) > max_windows:
        raise Invalid(f"windows: at most {max_windows} camera windows in one request")
    settings = request.app[SETTINGS].evidence
    async with transaction(request.app[SESSIONS]) as session:
        windows = []
        for n, w in enumerate(new.windows):
            try:
                cam = await inventory.get_camera(session, str(w.camera))
                if not await can_access_camera(request, cam.id):  # narrowed users: as if absent
                    raise NotFound(str(w.camera))
            except NotFound:
                raise Invalid(f"windows[{n}]: no camera {str(w.camera)[:60]}") from None
            windows.append(WindowSpec(cam.id, w.start_us, w.end_us))
        req = await create_request(
            session, requested_by=actor(request), fields=body, windows=windows,
            hold_review_us=now_us() + settings.hold_review_days * DAY_US,
            max_window_us=int(settings.max_window_hours * 3600 * 1_000_000),
        )
        req.directed_surveillance, req.ripa_reference = new.directed_surveillance, new.ripa_reference.strip()
        req.findings = findings(await build_plan(session, req))
        await add_custody(session, req.id, actor(request), "request.submitted", request.app[KEYS].sign,
                          crime_reference=req.crime_reference, officer=req.officer_name, force=req.force)
        await audit.append(session, actor(request), "evidence.request", f"evidence:{req.id}",
                           crime_reference=req.crime_reference, force=req.force, hold=req.hold_id,
                           directed_surveillance=req.directed_surveillance, ripa=req.ripa_reference or None,
                           windows=[{"camera": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us)}
                                    for w in windows])
        data = await _show(request, session, req)
    return web.json_response(data, status=201)


@routes.get(f"{PREFIX}/requests")
@requires(Permission.AUTHENTICATED, discloses=Disclosure.PERSONAL, action="evidence.list")
async def list_all(request: web.Request) -> web.Response:
    owner = await _scope(request)
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        rows = [await _show(request, session, r) for r in await list_requests(session, owner=owner) if _visible(r, allowed)]
    disclosure.note(request, "evidence", count=len(rows))
    return web.json_response({"requests": rows})


@routes.get(f"{PREFIX}/requests/{{id}}")
@requires(Permission.AUTHENTICATED, discloses=Disclosure.PERSONAL, action="evidence.view", cameras=_request_cameras)
async def show(request: web.Request) -> web.Response:
    owner = await _scope(request)
    async with request.app[SESSIONS]() as session:
        req = await get_request(session, _request_id(request), owner=owner)
        data = await _show(request, session, req)
    disclosure.note(request, f"evidence:{req.id}")
    return web.json_response(data)


async def _decide(request: web.Request, approve: bool) -> web.Response:
    decision = body_of(request, Decision)
    reason = decision.reason
    if not reason.strip():
        raise Invalid("reason: a decision needs a reason")
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), for_update=True)
        if req.requested_by == actor(request):
            raise Invalid("a request cannot be decided by the person who submitted it")
        req.findings = findings(await build_plan(session, req))  # the approver sees them as of now
        job = await decide(session, req, by=actor(request), approve=approve, reason=reason,
                           release_masters=decision.release_masters)
        verb = "approved" if approve else "refused"
        released = {"masters_released": True} if req.masters_released else {}
        await add_custody(session, req.id, actor(request), f"request.{verb}", request.app[KEYS].sign, reason=reason,
                          **released)
        await audit.append(session, actor(request), f"evidence.{'approve' if approve else 'refuse'}",
                           f"evidence:{req.id}", reason=reason, job=job.id if job else None, **released)
        data = await _show(request, session, req)
    if approve:
        jobs.wake(request.app)
    return web.json_response(data)


@routes.post(f"{PREFIX}/requests/{{id}}/approve")
@requires(Permission.APPROVE, cameras=_request_cameras, body=Decision)
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, True)


@routes.post(f"{PREFIX}/requests/{{id}}/refuse")
@requires(Permission.APPROVE, cameras=_request_cameras, body=Decision)
async def refuse(request: web.Request) -> web.Response:
    return await _decide(request, False)


@routes.post(f"{PREFIX}/requests/{{id}}/export")
@requires(Permission.EXPORT, cameras=_request_cameras, status=202)
async def export_again(request: web.Request) -> web.Response:
    """Queue the export again after a failure or cancellation."""
    owner = await _scope(request)
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), owner=owner, for_update=True)
        job = await queue_export(session, req, by=actor(request))
        await audit.append(session, actor(request), "evidence.export_queue", f"evidence:{req.id}", job=job.id)
        data = await _show(request, session, req)
    jobs.wake(request.app)
    return web.json_response(data, status=202)


@routes.post(f"{PREFIX}/requests/{{id}}/cancel")
@requires(Permission.EXPORT, cameras=_request_cameras, status=202)
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
        return web.json_response(await _show(request, session, await get_request(session, req.id)), status=202)


@routes.post(f"{PREFIX}/requests/{{id}}/close")
@requires(Permission.APPROVE, cameras=_request_cameras, body=Closing)
async def close(request: web.Request) -> web.Response:
    """Close the request: its hold is released and a review date recorded."""
    closing = body_of(request, Closing)
    reason = closing.reason
    settings = request.app[SETTINGS].evidence
    review_us = closing.review_us or now_us() + settings.close_review_days * DAY_US
    async with transaction(request.app[SESSIONS]) as session:
        req = await get_request(session, _request_id(request), for_update=True)
        await close_request(session, req, by=actor(request), reason=reason, review_us=review_us)
        await add_custody(session, req.id, actor(request), "request.closed", request.app[KEYS].sign,
                          reason=reason, review=us_to_iso(review_us))
        await audit.append(session, actor(request), "evidence.close", f"evidence:{req.id}", reason=reason,
                           review=us_to_iso(review_us), hold=req.hold_id)
        data = await _show(request, session, req)
    return web.json_response(data)


def _package_path(request: web.Request, req: EvidenceRequest) -> Path:
    path = request.app[SETTINGS].evidence_root / req.package_path if req.package_path else None
    if req.state not in (RequestState.READY.value, RequestState.DOWNLOADED.value) or path is None or not path.is_file():
        raise NotFound(f"evidence request {req.id} has no package to download")
    return path


async def _release(request: web.Request, session, locked: EvidenceRequest, *, who: str, via: str) -> None:
    """A release of the package: the disclosure register and the chain of custody."""
    move(locked, RequestState.DOWNLOADED)
    what = {"exhibit": locked.exhibit_ref, "manifest_sha256": locked.manifest_sha256,
            "package_bytes": locked.package_bytes,
            "windows": [{"camera": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us)}
                        for w in locked.windows]}
    await register_release(session, locked, released_by=who, what=what)
    await add_custody(session, locked.id, who, "package.downloaded", request.app[KEYS].sign, via=via,
                      address=request.remote or "", manifest_sha256=locked.manifest_sha256)


def _package_headers(req: EvidenceRequest) -> dict[str, str]:
    return {"Content-Type": "application/zip", "Content-Disposition": f'attachment; filename="{req.exhibit_ref}.zip"',
            "Cache-Control": "no-store"}


@routes.get(f"{PREFIX}/requests/{{id}}/package")
@requires(Permission.AUTHENTICATED, discloses=Disclosure.FOOTAGE, action="evidence.download", cameras=_request_cameras,
          produces="application/zip", pixels=Pixels.RECORDED)
async def download(request: web.Request) -> web.StreamResponse:
    """Stream the package. A GET from byte 0, or any GET by someone who never downloaded this
    package before, is a release (custody, register, audit); other Range GETs resume one."""
    owner = await _scope(request)
    who = actor(request)
    async with request.app[SESSIONS]() as session:
        req = await get_request(session, _request_id(request), owner=owner)
    await check_package_masks(request, req)
    path = _package_path(request, req)
    ranged = request.headers.get("Range", "").strip()
    # A HEAD (a download manager sizing the file) releases nothing.
    fresh = request.method == "GET" and (not ranged or ranged.replace(" ", "").startswith("bytes=0-"))
    async with transaction(request.app[SESSIONS]) as session:
        locked = await get_request(session, req.id, for_update=True)
        if request.method == "GET" and not fresh:
            fresh = not any(e.action == "package.downloaded" and e.actor == who
                            for e in await custody_log(session, req.id))
        if fresh:
            user = current_user(request)
            await _release(request, session, locked, who=who,
                           via=f"API token {user.token_name}" if user.via == "token" else user.via)
        action = "evidence.download" if fresh else ("evidence.download_head" if request.method == "HEAD"
                                                    else "evidence.download_resume")
        await disclosure.record_in(session, request, f"evidence:{req.id}", action=action, range=ranged or None)
    return web.FileResponse(path, headers=_package_headers(req))


@routes.post(f"{PREFIX}/requests/{{id}}/links")
@requires(Permission.AUTHENTICATED, cameras=_request_cameras, status=201)
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


_SINGLE_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{0,19})")
LINK_CHUNK_BYTES = 256 * 1024


def link_range(header: str, size_bytes: int) -> tuple[int, int]:
    """The byte range [start, end) a one-time link is asked for: the whole package without a
    Range header, else one ``bytes=N-`` or ``bytes=N-M`` range. Anything else (several ranges,
    suffix ranges, other units, a range past the end) is refused with 416: a download manager
    resuming asks for ``bytes=N-``, and a strict parser leaves no spelling that reaches bytes
    already sent."""
    header = header.strip()
    if not header:
        return 0, size_bytes
    match = _SINGLE_RANGE.fullmatch(header.replace(" ", ""))
    start = int(match.group(1)) if match else size_bytes
    end = min(int(match.group(2)) + 1, size_bytes) if match and match.group(2) else size_bytes
    if start >= size_bytes or end <= start:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{size_bytes}"}, content_type="application/json",
            text=json.dumps({"error": "a one-time link serves one range 'bytes=N-' within the package"}))
    return start, end


@routes.get(f"{PREFIX}/download/{{token}}")
@requires(Permission.PUBLIC, discloses=Disclosure.FOOTAGE, action="evidence.download",  # the token is the credential
          produces="application/zip", pixels=Pixels.RECORDED)
async def download_by_link(request: web.Request) -> web.StreamResponse:
    """Serve a one-time link: each byte of the package at most once (``link_range``, migration
    0010). A transfer that breaks off gives back what it did not send, so it can resume; a
    finished one leaves nothing, and any later request gets 410. A HEAD sizes the package and
    releases nothing."""
    refused = None
    async with transaction(request.app[SESSIONS]) as session:
        link: DownloadLink = await find_link(session, request.match_info["token"])
        # From here the request acts as the person who made the link (the audit trail names them).
        request[USER] = replace(ANONYMOUS, username=link.created_by, via="link", token_name=f"link {link.id}")
        req = await get_request(session, link.request_id)
        await check_package_masks(request, req)
        path = _package_path(request, req)
        size_bytes = (await asyncio.to_thread(path.stat)).st_size
        start, end = link_range(request.headers.get("Range", ""), size_bytes)
        if request.method == "HEAD":
            await disclosure.record_in(session, request, f"evidence:{req.id}", action="evidence.download_head",
                                       link=link.id)
            return web.Response(headers={**_package_headers(req), "Content-Length": str(size_bytes),
                                         "Accept-Ranges": "bytes"})
        if start < link.reserved_bytes:
            refused = link.id
        else:
            link.reserved_bytes = end
            first_use = link.used_us is None
            if first_use:
                link.used_us = now_us()
                locked = await get_request(session, req.id, for_update=True)
                await _release(request, session, locked, who=link.created_by, via=f"one-time link {link.id}")
            await disclosure.record_in(session, request, f"evidence:{req.id}",
                                       action="evidence.download" if first_use else "evidence.download_resume",
                                       range=f"{start}-{end - 1}", link=link.id)
    if refused is not None:
        await request.app[AUDIT].append(f"link:{link.created_by}", "evidence.link_reuse_refused",
                                        f"evidence:{req.id}", link=refused, range=request.headers.get("Range"))
        raise web.HTTPGone(text='{"error": "this one-time link was already used"}', content_type="application/json")
    return await _send_link_bytes(request, link.id, path, req, start, end, size_bytes)


async def _send_link_bytes(request: web.Request, link_id: int, path: Path, req: EvidenceRequest,
                           start: int, end: int, size_bytes: int) -> web.StreamResponse:
    partial = (start, end) != (0, size_bytes)
    response = web.StreamResponse(status=206 if partial else 200, headers=_package_headers(req))
    response.content_length = end - start
    if partial:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size_bytes}"
    sent = 0
    try:
        await response.prepare(request)
        with open(path, "rb") as f:  # noqa: ASYNC230 - reads are in to_thread below
            await asyncio.to_thread(f.seek, start)
            while sent < end - start:
                chunk = await asyncio.to_thread(f.read, min(LINK_CHUNK_BYTES, end - start - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        log.info("evidence %s: one-time link %s transfer broke off after %d of %d bytes",
                 req.id, link_id, sent, end - start)
        raise
    finally:
        # What reached the client is delivered; what did not is given back for a resume.
        async with transaction(request.app[SESSIONS]) as session:
            link = await session.get(DownloadLink, link_id, with_for_update=True)
            if link is not None:
                link.delivered_bytes = max(link.delivered_bytes, start + sent)
                if sent < end - start and link.reserved_bytes == end:
                    link.reserved_bytes = start + sent
    return response


@routes.get(f"{PREFIX}/requests/{{id}}/custody")
@requires(Permission.AUTHENTICATED, discloses=Disclosure.PERSONAL, action="evidence.custody_read",
          cameras=_request_cameras, produces="application/x-ndjson")
async def custody(request: web.Request) -> web.Response:
    """The whole chain of custody (production and each download) as signed JSON lines."""
    owner = await _scope(request)
    async with request.app[SESSIONS]() as session:
        req = await get_request(session, _request_id(request), owner=owner)
        lines = [custody_line(e) for e in await custody_log(session, req.id)]
    disclosure.note(request, f"evidence:{req.id}", entries=len(lines))
    text = "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines)
    return web.Response(text=text, content_type="application/x-ndjson")


@routes.get(f"{PREFIX}/register")
@requires(Permission.APPROVE, discloses=Disclosure.PERSONAL, action="evidence.register_read")
async def register(request: web.Request) -> web.Response:
    allowed = await allowed_camera_ids(request)
    async with request.app[SESSIONS]() as session:
        entries = await list_register(session)
        if allowed is not None:
            visible = {r.id for r in await list_requests(session) if _visible(r, allowed)}
            entries = [e for e in entries if e.request_id in visible]
        rows = [register_json(e) for e in entries]
    disclosure.note(request, "evidence:register", count=len(rows))
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


class PublicKey(BaseModel):
    """The key that signs evidence manifests and custody lines."""

    algorithm: Literal["Ed25519"]
    pem: str
    fingerprint_sha256: str


@routes.get(f"{PREFIX}/public-key")
@requires(Permission.AUTHENTICATED, response=PublicKey)
async def public_key(request: web.Request) -> web.Response:
    keys = request.app[KEYS]
    return web.json_response({"algorithm": "Ed25519", "pem": keys.public_key_pem().decode(),
                              "fingerprint_sha256": keys.public_key_fingerprint()})
