"""RIPA authorisations over HTTP: /api/v1/ripa/...

The register (``ripa`` right, supervisors): list, record, review, renew, cancel, and the report
for an IPCO inspection. It spans the whole network, so a user narrowed to some sites or cameras
is refused it (``cameras=every_camera``). Directed use (``directed_use`` right, operators): the
authorisations in force that cover a camera of theirs, and opening or ending their own directed
use of a camera, which links their PTZ actions on it to the authorisation in the audit trail
(controlroom.onvif_actions). Reads disclose personal data (the subject's description) and are
audited by the mechanism. docs/design/lawful-use.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.auth import actor, allowed_camera_ids, can_access_camera, every_camera
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import Body, Name, Query, RowId, Text, Time, body_of, query_of
from controlroom.lawful import authorisation_json, report_csv, ripa_report, use_json
from controlroom.permissions import Disclosure, Permission, requires
from storage import Invalid, NotFound, inventory, ripa
from storage.db import now_us, transaction
from storage.models import Camera

routes = web.RouteTableDef()
PREFIX = "/api/v1/ripa"
Reference = Annotated[str, Field(min_length=1, max_length=100)]


class AuthorisationNew(Body):
    """An authorisation as granted: who granted it, on what grounds, for whom, where, and when."""

    reference: Reference
    kind: Literal["directed_surveillance", "chis"] = "directed_surveillance"
    authorising_officer: Name
    grounds: Text = Field(min_length=1)
    subject: Text = Field(min_length=1, description="the person to be watched, as described")
    operation: Text = ""
    cameras: list[Name | int] = Field(default_factory=list, max_length=200, description="ids or names; none: any")
    sites: list[Name | int] = Field(default_factory=list, max_length=100, description="ids or names")
    authorised: Time = Field(description="when it was granted")
    start: Time | None = Field(None, description="when it takes effect (default: when granted)")
    expires: Time | None = Field(None, description="an earlier end than the statutory three months")
    next_review: Time | None = None


class Review(Body):
    officer: Name
    note: Text = Field(min_length=1)
    next_review: Time | None = None


class Renewal(Body):
    officer: Name
    note: Text = Field(min_length=1)
    next_review: Time | None = None


class Cancellation(Body):
    officer: Name
    reason: Text = Field(min_length=1)


class RegisterQuery(Query):
    state: Literal["pending", "live", "review_due", "expired", "cancelled"] | None = None


class ReportQuery(Query):
    start_us: Time = Field(alias="from")
    end_us: Time = Field(alias="to")
    format: Literal["json", "csv"] = "json"


class UseNew(Body):
    authorisation: Reference = Field(description="the authorisation's reference")
    camera: Name | int
    purpose: Text = ""


class UseEnd(Body):
    use: RowId


def _ref(request: web.Request) -> str:
    return request.match_info["id"]


async def _places(session, names: list[str | int], what: str) -> list[int]:
    ids = []
    for n in names:
        if what == "camera":
            try:
                ids.append((await inventory.get_camera(session, str(n))).id)
            except NotFound:
                raise Invalid(f"cameras: no camera {str(n)[:60]!r}") from None
        else:
            sites = {s.name: s.id for s in await inventory.list_sites(session)}
            if isinstance(n, int) or str(n).isdigit():
                if int(n) not in sites.values():
                    raise Invalid(f"sites: no site {n}")
                ids.append(int(n))
            elif n in sites:
                ids.append(sites[n])
            else:
                raise Invalid(f"sites: no site {str(n)[:60]!r}")
    return ids


@routes.get(f"{PREFIX}/authorisations")
@requires(Permission.RIPA, discloses=Disclosure.PERSONAL, action="ripa.list", cameras=every_camera,
          query=RegisterQuery)
async def list_register(request: web.Request) -> web.Response:
    state = query_of(request, RegisterQuery).state
    now = now_us()
    async with request.app[SESSIONS]() as session:
        rows = [authorisation_json(a, now) for a in await ripa.list_all(session)]
    if state:
        rows = [r for r in rows if r["state"] == state]
    disclosure.note(request, "ripa", count=len(rows))
    return web.json_response({"authorisations": rows})


@routes.post(f"{PREFIX}/authorisations")
@requires(Permission.RIPA, cameras=every_camera, body=AuthorisationNew, status=201)
async def create(request: web.Request) -> web.Response:
    new = body_of(request, AuthorisationNew)
    async with transaction(request.app[SESSIONS]) as session:
        auth = await ripa.create(
            session, by=actor(request), reference=new.reference, kind=new.kind,
            authorising_officer=new.authorising_officer, grounds=new.grounds, subject=new.subject,
            operation=new.operation, camera_ids=await _places(session, new.cameras, "camera"),
            site_ids=await _places(session, new.sites, "site"), authorised_us=new.authorised,
            start_us=new.start, expires_us=new.expires, next_review_us=new.next_review,
            review_interval_days=request.app[SETTINGS].lawful.ripa_review_interval_days,
        )
        data = authorisation_json(auth)
    return web.json_response(data, status=201)


@routes.get(f"{PREFIX}/authorisations/{{id}}")
@requires(Permission.RIPA, discloses=Disclosure.PERSONAL, action="ripa.view", cameras=every_camera)
async def show(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        auth = await ripa.get(session, _ref(request))
        data = authorisation_json(auth)
        data["directed_uses"] = [use_json(u, auth.reference) for u in await ripa.uses_of(session, auth.id)]
    disclosure.note(request, f"ripa:{auth.reference}")
    return web.json_response(data)


@routes.post(f"{PREFIX}/authorisations/{{id}}/review")
@requires(Permission.RIPA, cameras=every_camera, body=Review)
async def review(request: web.Request) -> web.Response:
    body = body_of(request, Review)
    async with transaction(request.app[SESSIONS]) as session:
        auth = await ripa.get(session, _ref(request), for_update=True)
        await ripa.review(session, auth, by=actor(request), officer=body.officer, note=body.note,
                          next_review_us=body.next_review)
        data = authorisation_json(auth)
    return web.json_response(data)


@routes.post(f"{PREFIX}/authorisations/{{id}}/renew")
@requires(Permission.RIPA, cameras=every_camera, body=Renewal)
async def renew(request: web.Request) -> web.Response:
    body = body_of(request, Renewal)
    async with transaction(request.app[SESSIONS]) as session:
        auth = await ripa.get(session, _ref(request), for_update=True)
        await ripa.renew(session, auth, by=actor(request), officer=body.officer, note=body.note,
                         next_review_us=body.next_review,
                         review_interval_days=request.app[SETTINGS].lawful.ripa_review_interval_days)
        data = authorisation_json(auth)
    return web.json_response(data)


@routes.post(f"{PREFIX}/authorisations/{{id}}/cancel")
@requires(Permission.RIPA, cameras=every_camera, body=Cancellation)
async def cancel(request: web.Request) -> web.Response:
    body = body_of(request, Cancellation)
    async with transaction(request.app[SESSIONS]) as session:
        auth = await ripa.get(session, _ref(request), for_update=True)
        await ripa.cancel(session, auth, by=actor(request), officer=body.officer, reason=body.reason)
        data = authorisation_json(auth)
    return web.json_response(data)


@routes.get(f"{PREFIX}/report")
@requires(Permission.RIPA, discloses=Disclosure.PERSONAL, action="ripa.report", cameras=every_camera,
          query=ReportQuery)
async def report(request: web.Request) -> web.Response:
    """For an IPCO inspection: every authorisation of the period, its history and linked use."""
    q = query_of(request, ReportQuery)
    if q.end_us <= q.start_us:
        raise Invalid("to: must be after from")
    async with request.app[SESSIONS]() as session:
        data = await ripa_report(session, q.start_us, q.end_us)
    disclosure.note(request, "ripa", count=len(data["authorisations"]), format=q.format)
    if q.format == "csv":
        return web.Response(text=report_csv(data), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="ripa-report.csv"'})
    return web.json_response(data)


# --- directed use ---------------------------------------------------------------------------

async def _covers_mine(request: web.Request, auth: ripa.Authorisation, session) -> bool:
    """An authorisation a narrowed operator may see: one that covers a camera of theirs."""
    allowed = await allowed_camera_ids(request)
    if allowed is None:
        return True
    for cid in allowed:
        cam = await session.get(Camera, cid)
        if cam is not None and ripa.covers_camera(auth, cam):
            return True
    return False


@routes.get(f"{PREFIX}/in-force")
@requires(Permission.DIRECTED_USE, discloses=Disclosure.PERSONAL, action="ripa.live_list")
async def in_force(request: web.Request) -> web.Response:
    """The authorisations in force now, as an operator needs them to link directed use."""
    now = now_us()
    async with request.app[SESSIONS]() as session:
        rows = [authorisation_json(a, now, full=False) for a in await ripa.list_all(session, in_force_only=True)
                if await _covers_mine(request, a, session)]
    disclosure.note(request, "ripa", count=len(rows))
    return web.json_response({"authorisations": rows})


@routes.get(f"{PREFIX}/directed-use")
@requires(Permission.DIRECTED_USE, discloses=Disclosure.PERSONAL, action="ripa.use_list")
async def my_uses(request: web.Request) -> web.Response:
    """The caller's open directed uses."""
    async with request.app[SESSIONS]() as session:
        rows = []
        for u in await ripa.open_uses(session, operator=actor(request)):
            auth = await session.get(ripa.Authorisation, u.authorisation_id)
            rows.append(use_json(u, auth.reference if auth else ""))
    disclosure.note(request, "ripa", count=len(rows))
    return web.json_response({"uses": rows})


@routes.post(f"{PREFIX}/directed-use")
@requires(Permission.DIRECTED_USE, body=UseNew, status=201)
async def start_use(request: web.Request) -> web.Response:
    """Open directed use of a camera under an authorisation in force that covers it: until it is
    ended, the caller's PTZ actions on that camera carry the authorisation in the audit trail."""
    body = body_of(request, UseNew)
    async with transaction(request.app[SESSIONS]) as session:
        try:
            cam = await inventory.get_camera(session, str(body.camera))
            if not await can_access_camera(request, cam.id):  # narrowed users: as if absent
                raise NotFound(str(body.camera))
        except NotFound:
            raise Invalid(f"camera: no camera {str(body.camera)[:60]!r}") from None
        try:
            auth = await ripa.get(session, body.authorisation)
        except NotFound:
            raise Invalid(f"authorisation: no RIPA authorisation {body.authorisation!r}") from None
        use = await ripa.start_use(session, auth, cam, operator=actor(request), purpose=body.purpose)
        data = use_json(use, auth.reference)
    return web.json_response(data, status=201)


@routes.post(f"{PREFIX}/directed-use/end")
@requires(Permission.DIRECTED_USE, body=UseEnd)
async def end_use(request: web.Request) -> web.Response:
    """End one of the caller's own directed uses."""
    use_id = body_of(request, UseEnd).use
    async with transaction(request.app[SESSIONS]) as session:
        use = await ripa.end_use(session, use_id, by=actor(request), operator=actor(request))
        data = use_json(use)
    return web.json_response(data)
