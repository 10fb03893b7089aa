"""Monitoring hours over HTTP: signing on and off duty, the rota, and a week's coverage.

- ``GET /api/v1/duty``: the caller's own duty state and, for those who watch (live_view), how
  many are on duty (no names).
- ``POST /api/v1/duty/on`` (``{"note": ...}``) and ``POST /api/v1/duty/off``: sign on / off
  (live_view: operators and supervisors). Signing on twice, or off when not on, is 409.
- ``POST /api/v1/duty/{username}/off``: a supervisor signs off someone who left without doing so.
- ``GET /api/v1/duty/sessions?week=2026-W48``: who was on duty when (staff names: a disclosure).
- ``GET /api/v1/duty/week?week=2026-W48``: staffed hours against the target, unmonitored
  intervals, planned against actual (storage.duty.week_coverage; no names).
- ``GET/POST /api/v1/rota``, ``PATCH/DELETE /api/v1/rota/{window}``: the planned weekly windows.

Rights (docs/design/security-model.md): signing oneself on and off is ``live_view``; everything
else is ``rota`` (supervisors). Every change is audited by storage.duty in its transaction.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field

from controlroom import disclosure
from controlroom.auth import actor, current_user
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import Body, Query, Text, body_of, query_of
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.timefmt import us_to_iso
from storage import NotFound, duty
from storage.db import now_us, row_id, transaction
from storage.weeks import week_bounds, week_of

routes = web.RouteTableDef()

# An ISO week of 1970..2199 (the times the service handles, controlroom.timefmt).
Week = Annotated[str, Field(pattern=r"^(19[7-9]\d|2[01]\d\d)-W(0[1-9]|[1-4]\d|5[0-3])$",
                            description="an ISO week in local time, e.g. 2026-W48 (default: this week)")]


class WeekQuery(Query):
    week: Week | None = None


class SignOnBody(Body):
    note: Text = ""


class WindowBody(Body):
    weekday: int = Field(ge=0, le=6, description="0 = Monday .. 6 = Sunday (local)")
    start_minute: int = Field(ge=0, le=1439, description="minutes from local midnight")
    end_minute: int = Field(ge=1, le=1440, description="after start_minute; 1440 is midnight")
    operators: int = Field(1, ge=0, le=100, description="staff planned in the window")


class WindowUpdate(Body):
    weekday: int | None = Field(None, ge=0, le=6)
    start_minute: int | None = Field(None, ge=0, le=1439)
    end_minute: int | None = Field(None, ge=1, le=1440)
    operators: int | None = Field(None, ge=0, le=100)


def _tz(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS].display_timezone)


def _week(request: web.Request) -> str:
    return query_of(request, WeekQuery).week or week_of(now_us(), request.app[SETTINGS].display_timezone)


def _times(request: web.Request, **named: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, us in named.items():
        out[name] = us_to_iso(us)
        out[f"{name}_local"] = us_to_iso(us, _tz(request))
    return out


def session_json(request: web.Request, d: duty.DutySession) -> dict[str, Any]:
    return {**d.to_dict(), **_times(request, on=d.on_at_us, off=d.off_at_us)}


def _intervals(request: web.Request, spans: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [{"start_us": s, "end_us": e, "hours": round((e - s) / duty.HOUR_US, 3),
             **_times(request, start=s, end=e)} for s, e in spans]


@routes.get("/api/v1/duty")
@requires(Permission.AUTHENTICATED)
async def my_duty(request: web.Request) -> web.Response:
    watches = Permission.LIVE_VIEW in current_user(request).permissions
    async with request.app[SESSIONS]() as session:
        mine = await duty.current(session, actor(request))
        # How many watch now is for those who watch: the control room's cover is not the
        # business of a police account or an administrator.
        count = len(await duty.on_duty(session)) if watches else None
    return web.json_response({"on_duty": mine is not None,
                              "session": session_json(request, mine) if mine else None,
                              "on_duty_count": count})


@routes.post("/api/v1/duty/on")
@requires(Permission.LIVE_VIEW, body=SignOnBody, status=201)
async def sign_on(request: web.Request) -> web.Response:
    note = body_of(request, SignOnBody).note
    async with transaction(request.app[SESSIONS]) as session:
        d = await duty.sign_on(session, actor(request), note)
    return web.json_response(session_json(request, d), status=201)


@routes.post("/api/v1/duty/off")
@requires(Permission.LIVE_VIEW)
async def sign_off(request: web.Request) -> web.Response:
    async with transaction(request.app[SESSIONS]) as session:
        d = await duty.sign_off(session, actor(request))
    return web.json_response(session_json(request, d))


@routes.post("/api/v1/duty/{username}/off")
@requires(Permission.ROTA)
async def sign_off_other(request: web.Request) -> web.Response:
    async with transaction(request.app[SESSIONS]) as session:
        d = await duty.sign_off(session, request.match_info["username"], by=actor(request))
    return web.json_response(session_json(request, d))


@routes.get("/api/v1/duty/sessions")
@requires(Permission.ROTA, discloses=Disclosure.PERSONAL, action="duty.sessions", query=WeekQuery)
async def duty_sessions(request: web.Request) -> web.Response:
    week = _week(request)
    start, end = week_bounds(week, request.app[SETTINGS].display_timezone)
    async with request.app[SESSIONS]() as session:
        rows = await duty.sessions_between(session, start, end)
    disclosure.note(request, f"week:{week}", sessions=len(rows))
    return web.json_response({"week": week, "sessions": [session_json(request, d) for d in rows]})


@routes.get("/api/v1/duty/week")
@requires(Permission.ROTA, query=WeekQuery)
async def week_coverage(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[SESSIONS]() as session:
        cov = await duty.week_coverage(session, _week(request), target_hours=settings.health.target_hours,
                                       tz_name=settings.display_timezone)
    body = cov.to_dict()
    body.update(_times(request, start=cov.start_us, end=cov.end_us))
    body["unmonitored"] = _intervals(request, cov.unmonitored)
    body["planned_unstaffed"] = _intervals(request, cov.planned_unstaffed)
    return web.json_response(body)


@routes.get("/api/v1/rota")
@requires(Permission.ROTA)
async def list_rota(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        windows = await duty.list_rota(session)
    return web.json_response({"windows": [w.to_dict() for w in windows]})


@routes.post("/api/v1/rota")
@requires(Permission.ROTA, body=WindowBody, status=201)
async def add_window(request: web.Request) -> web.Response:
    body = body_of(request, WindowBody)
    async with transaction(request.app[SESSIONS]) as session:
        w = await duty.add_window(session, actor(request), **body.model_dump())
    return web.json_response(w.to_dict(), status=201)


def _window_id(request: web.Request) -> int:
    window_id = row_id(request.match_info["window"])
    if window_id is None:
        raise NotFound(f"no rota window {request.match_info['window'][:40]!r}")
    return window_id


@routes.patch("/api/v1/rota/{window}")
@requires(Permission.ROTA, body=WindowUpdate)
async def update_window(request: web.Request) -> web.Response:
    changes = body_of(request, WindowUpdate).model_dump(exclude_none=True)
    async with transaction(request.app[SESSIONS]) as session:
        w = await duty.update_window(session, actor(request), _window_id(request), **changes)
    return web.json_response(w.to_dict())


@routes.delete("/api/v1/rota/{window}")
@requires(Permission.ROTA)
async def remove_window(request: web.Request) -> web.Response:
    async with transaction(request.app[SESSIONS]) as session:
        await duty.remove_window(session, actor(request), _window_id(request))
    return web.json_response({"removed": True})

