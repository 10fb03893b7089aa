"""Subject access requests over HTTP: /api/v1/sar/...

The register (``sar`` right: supervisors, who handle data protection): record a request, verify
the requester's identity (which starts the statutory clock), extend the deadline with a reason,
find the footage (windows on cameras, shown with what the catalogue holds for them: segments,
gaps, clock flags) and hold it, then close the request as disclosed, refused (citing the
exemption) or withdrawn. A SAR may name any camera, so narrowed users are refused the register
(``cameras=every_camera``). Reads disclose personal data and are audited by the mechanism.
docs/design/lawful-use.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.auth import actor, every_camera
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import Body, Name, Query, RowId, Text, Time, body_of, query_of
from controlroom.evidence.plan import build_plan, findings
from controlroom.lawful import sar_json
from controlroom.permissions import Disclosure, Permission, requires
from storage import Invalid, NotFound, inventory, sar
from storage.db import now_us, transaction

routes = web.RouteTableDef()
PREFIX = "/api/v1/sar"
DAY_US = sar.DAY_US


class SarNew(Body):
    """A request as received: who asks, how they proved who they are, how to recognise them."""

    requester_name: Name
    requester_contact: Text = ""
    received: Time = Field(description="when the request arrived")
    identity_method: Text = Field("", description="how identity was verified; empty: not yet")
    description: Text = Field(min_length=1, description="of themselves and their clothing")
    places_times: Text = Field(min_length=1, description="where and when they were, in their words")


class Verification(Body):
    method: Text = Field(min_length=1)


class Extension(Body):
    reason: Text = Field(min_length=1)


class SarWindowNew(Body):
    camera: Name | int = Field(description="the camera's id or name")
    start_us: Time = Field(alias="from")
    end_us: Time = Field(alias="to")
    note: Text = ""

    model_config = {"extra": "forbid", "populate_by_name": True}


class SarWindowGone(Body):
    window: RowId


class SarClosing(Body):
    state: Literal["disclosed", "refused", "withdrawn"]
    outcome: Text = Field(min_length=1)
    exemption: Annotated[str, Field(max_length=2000)] = ""


class SarListQuery(Query):
    open: Literal["0", "1", "true", "false"] | None = None


def _id(request: web.Request) -> str:
    return request.match_info["id"]


async def _show(session, s: sar.SubjectAccessRequest) -> dict:
    data = sar_json(s)
    data["findings"] = findings(await build_plan(session, s)) if s.windows else None  # gaps shown, never hidden
    return data


@routes.get(f"{PREFIX}/requests")
@requires(Permission.SAR, discloses=Disclosure.PERSONAL, action="sar.list", cameras=every_camera, query=SarListQuery)
async def list_all(request: web.Request) -> web.Response:
    open_only = query_of(request, SarListQuery).open in ("1", "true")
    now = now_us()
    async with request.app[SESSIONS]() as session:
        rows = [sar_json(s, now) for s in await sar.list_all(session, open_only=open_only)]
    disclosure.note(request, "sar", count=len(rows))
    return web.json_response({"requests": rows})


@routes.post(f"{PREFIX}/requests")
@requires(Permission.SAR, cameras=every_camera, body=SarNew, status=201)
async def create(request: web.Request) -> web.Response:
    new = body_of(request, SarNew)
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.create(session, by=actor(request), requester_name=new.requester_name,
                             requester_contact=new.requester_contact, received_us=new.received,
                             identity_method=new.identity_method, description=new.description,
                             places_times=new.places_times)
        data = sar_json(s)
    return web.json_response(data, status=201)


@routes.get(f"{PREFIX}/requests/{{id}}")
@requires(Permission.SAR, discloses=Disclosure.PERSONAL, action="sar.view", cameras=every_camera)
async def show(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        s = await sar.get(session, _id(request))
        data = await _show(session, s)
    disclosure.note(request, f"sar:{s.reference}")
    return web.json_response(data)


@routes.post(f"{PREFIX}/requests/{{id}}/verify")
@requires(Permission.SAR, cameras=every_camera, body=Verification)
async def verify(request: web.Request) -> web.Response:
    method = body_of(request, Verification).method
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, _id(request), for_update=True)
        await sar.verify_identity(session, s, by=actor(request), method=method)
        data = sar_json(s)
    return web.json_response(data)


@routes.post(f"{PREFIX}/requests/{{id}}/extend")
@requires(Permission.SAR, cameras=every_camera, body=Extension)
async def extend(request: web.Request) -> web.Response:
    reason = body_of(request, Extension).reason
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, _id(request), for_update=True)
        await sar.extend(session, s, by=actor(request), reason=reason)
        data = sar_json(s)
    return web.json_response(data)


@routes.post(f"{PREFIX}/requests/{{id}}/windows")
@requires(Permission.SAR, cameras=every_camera, body=SarWindowNew, status=201)
async def add_window(request: web.Request) -> web.Response:
    """Add footage (a camera and a time range) to the request and to its hold; the answer shows
    what the catalogue holds for every window (segments, gaps, clock flags)."""
    body = body_of(request, SarWindowNew)
    settings = request.app[SETTINGS].lawful
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, _id(request), for_update=True)
        try:
            cam = await inventory.get_camera(session, str(body.camera))
        except NotFound:
            raise Invalid(f"camera: no camera {str(body.camera)[:60]!r}") from None
        await sar.add_window(session, s, by=actor(request), camera_id=cam.id, start_us=body.start_us,
                             end_us=body.end_us, note=body.note,
                             max_window_us=int(settings.sar_max_window_hours * 3_600_000_000),
                             hold_review_us=now_us() + settings.sar_hold_review_days * DAY_US)
        data = await _show(session, s)
    return web.json_response(data, status=201)


@routes.post(f"{PREFIX}/requests/{{id}}/windows/remove")
@requires(Permission.SAR, cameras=every_camera, body=SarWindowGone)
async def remove_window(request: web.Request) -> web.Response:
    window_id = body_of(request, SarWindowGone).window
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, _id(request), for_update=True)
        await sar.remove_window(session, s, window_id, by=actor(request))
        data = await _show(session, s)
    return web.json_response(data)


@routes.post(f"{PREFIX}/requests/{{id}}/close")
@requires(Permission.SAR, cameras=every_camera, body=SarClosing)
async def close(request: web.Request) -> web.Response:
    body = body_of(request, SarClosing)
    async with transaction(request.app[SESSIONS]) as session:
        s = await sar.get(session, _id(request), for_update=True)
        await sar.close(session, s, by=actor(request), to=body.state, outcome=body.outcome, exemption=body.exemption)
        data = sar_json(s)
    return web.json_response(data)
