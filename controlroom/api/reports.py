"""Reports: /api/v1/reports/... (docs/design/reports.md).

Supervisors (REPORTS) read the weekly tasking pack and the statistics table as JSON, PDF and CSV,
and send a police-safe edition of a week's pack to a named police account. Police read the
packs sent to them (EVIDENCE_REQUEST, the right they request footage with).

- The supervisor's pack names operators, plates, officers and free-text places: it discloses
  personal data, and each read is audited by the disclosure mechanism (``reports.tasking``).
- The statistics table is counts by category: no one's data (not a disclosure).
- Sending is the disclosure to police, audited (``reports.send``) in the transaction that keeps
  the police-safe content exactly as sent; the officer's reads of it are audited too, by the disclosure mechanism (``reports.release_read``).
- Narrowing: a pack and a table count every camera, site and operator of the control room and
  cannot be cut to some cameras without misleading (staffed hours, repeat locations), so every
  supervisor route is refused to a user narrowed to some sites or cameras (``every_camera``).
  A police account reads what a supervisor chose to send it, whatever its narrowing.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field

from controlroom import disclosure
from controlroom.auth import actor, every_camera
from controlroom.context import SESSIONS, SETTINGS
from controlroom.contract import Body, Name, Query, Text, body_of, query_of
from controlroom.permissions import Disclosure, Permission, requires
from controlroom.reports import render
from controlroom.reports.stats import StatsTable, build_stats
from controlroom.reports.tasking import (
    TaskingPack,
    build_tasking,
    from_dict,
    last_week,
    police_safe,
)
from storage import Invalid, NotFound, accounts
from storage import reports as store
from storage.db import row_id, transaction
from storage.weeks import parse_week

routes = web.RouteTableDef()
PREFIX = "/api/v1/reports"


def _week(value: str) -> str:
    year, _ = parse_week(value)  # Invalid (400) names what is wrong
    if not 1971 <= year <= 2199:
        raise ValueError("a week between 1971 and 2199")
    return value


Week = Annotated[str, Field(pattern=r"^\d{4}-W\d{2}$", examples=["2026-W48"]), AfterValidator(_week)]
Chart = Annotated[str, Field(pattern="^(" + "|".join(render.CHARTS) + ")$")]


class WeekQuery(Query):
    week: Week | None = Field(None, description="ISO week, local time (default: last week)")


class ChartQuery(WeekQuery):
    chart: Chart = Field("heatmap", description="heatmap | categories")


class StatsQuery(Query):
    from_date: date = Field(alias="from", description="first local date of the period")
    to_date: date = Field(alias="to", description="last local date of the period (included)")
    compare_from: date = Field(description="first local date of the comparison period")
    compare_to: date = Field(description="last local date of the comparison period (included)")


class SendPack(Body):
    week: Week
    recipient: Name = Field(description="the police account to send it to")
    note: Text = ""


def _tz(request: web.Request) -> str:
    return request.app[SETTINGS].display_timezone


async def _pack(request: web.Request) -> TaskingPack:
    q = query_of(request, WeekQuery)
    week = q.week or last_week(tz_name=_tz(request))
    async with request.app[SESSIONS]() as session:
        return await build_tasking(session, week, tz_name=_tz(request),
                                   target_hours=request.app[SETTINGS].health.target_hours)


async def _stats(request: web.Request) -> StatsTable:
    q = query_of(request, StatsQuery)
    async with request.app[SESSIONS]() as session:
        return await build_stats(session, q.from_date, q.to_date, q.compare_from, q.compare_to, tz_name=_tz(request))


def _file(body: bytes | str, content_type: str, filename: str) -> web.Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    if isinstance(body, str):
        return web.Response(text=body, content_type=content_type, charset="utf-8", headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


# --- the supervisor's pack ----------------------------------------------------------------------

@routes.get(f"{PREFIX}/tasking")
@requires(Permission.REPORTS, discloses=Disclosure.PERSONAL, action="reports.tasking", cameras=every_camera,
          query=WeekQuery)
async def tasking(request: web.Request) -> web.Response:
    """The weekly tasking pack (supervisor edition) for ``?week=2026-W48`` (default: last week)."""
    pack = await _pack(request)
    disclosure.note(request, f"tasking:{pack.week}", week=pack.week, format="json", incidents=pack.total)
    return web.json_response(pack.to_dict(), headers={"Cache-Control": "no-store"})


@routes.get(f"{PREFIX}/tasking.pdf")
@requires(Permission.REPORTS, discloses=Disclosure.PERSONAL, action="reports.tasking", cameras=every_camera,
          query=WeekQuery, produces="application/pdf")
async def tasking_pdf(request: web.Request) -> web.Response:
    pack = await _pack(request)
    body = await asyncio.to_thread(render.tasking_pdf, pack)
    disclosure.note(request, f"tasking:{pack.week}", week=pack.week, format="pdf", incidents=pack.total)
    return _file(body, "application/pdf", f"tasking-{pack.week}.pdf")


@routes.get(f"{PREFIX}/tasking.csv")
@requires(Permission.REPORTS, discloses=Disclosure.PERSONAL, action="reports.tasking", cameras=every_camera,
          query=WeekQuery, produces="text/csv")
async def tasking_csv(request: web.Request) -> web.Response:
    pack = await _pack(request)
    disclosure.note(request, f"tasking:{pack.week}", week=pack.week, format="csv", incidents=pack.total)
    return _file(render.tasking_csv(pack), "text/csv", f"tasking-{pack.week}.csv")


@routes.get(f"{PREFIX}/tasking/chart.png")
@requires(Permission.REPORTS, cameras=every_camera, query=ChartQuery, produces="image/png")
async def tasking_chart(request: web.Request) -> web.Response:
    """A chart of the pack (``?chart=heatmap|categories``): counts drawn, the picture the PDF has."""
    chart = query_of(request, ChartQuery).chart
    pack = await _pack(request)
    body = await asyncio.to_thread(render.chart_png, pack, chart)
    return web.Response(body=body, content_type="image/png", headers={"Cache-Control": "no-store"})


@routes.post(f"{PREFIX}/tasking/send")
@requires(Permission.REPORTS, cameras=every_camera, body=SendPack, status=201)
async def send(request: web.Request) -> web.Response:
    """Send the week's pack, police edition (no names, plates, free text or images), to a police
    account. Audited as ``reports.send``; the content is kept as sent."""
    b = body_of(request, SendPack)
    tz = _tz(request)
    async with transaction(request.app[SESSIONS]) as session:
        officer = await accounts.find_user(session, b.recipient)
        if officer is None or officer.role != "police" or officer.disabled:
            raise Invalid(f"recipient: {b.recipient!r} is not an enabled police account")
        pack = police_safe(await build_tasking(session, b.week, tz_name=tz,
                                               target_hours=request.app[SETTINGS].health.target_hours))
        release = await store.add_release(session, week=b.week, by=actor(request), recipient=officer.username,
                                          content=pack.to_dict(), note=b.note)
        summary = release.summary()
    return web.json_response(summary, status=201)


# --- the statistics table -----------------------------------------------------------------------

@routes.get(f"{PREFIX}/stats")
@requires(Permission.REPORTS, cameras=every_camera, query=StatsQuery)
async def stats(request: web.Request) -> web.Response:
    """Incidents by category, ``?from=&to=`` against ``?compare_from=&compare_to=`` (local dates,
    both ends included), with the percentage change."""
    return web.json_response((await _stats(request)).to_dict())


@routes.get(f"{PREFIX}/stats.pdf")
@requires(Permission.REPORTS, cameras=every_camera, query=StatsQuery, produces="application/pdf")
async def stats_pdf(request: web.Request) -> web.Response:
    table = await _stats(request)
    body = await asyncio.to_thread(render.stats_pdf, table)
    return _file(body, "application/pdf", f"statistics-{table.from_date}-{table.to_date}.pdf")


@routes.get(f"{PREFIX}/stats.csv")
@requires(Permission.REPORTS, cameras=every_camera, query=StatsQuery, produces="text/csv")
async def stats_csv(request: web.Request) -> web.Response:
    table = await _stats(request)
    return _file(render.stats_csv(table), "text/csv", f"statistics-{table.from_date}-{table.to_date}.csv")


# --- police: the packs sent to them ---------------------------------------------------------------

def _police_view(release: store.ReportRelease) -> dict:
    return {"id": release.id, "week": release.week, "sent_at_us": release.sent_at_us, "note": release.note}


@routes.get(f"{PREFIX}/released")
@requires(Permission.EVIDENCE_REQUEST)
async def released(request: web.Request) -> web.Response:
    """The tasking packs supervisors sent to the caller, newest first."""
    async with request.app[SESSIONS]() as session:
        rows = await store.releases_for(session, actor(request))
    return web.json_response({"releases": [_police_view(r) for r in rows]})


async def _release(request: web.Request, fmt: str) -> store.ReportRelease:
    release_id = row_id(request.match_info["release"])
    if release_id is None:
        raise NotFound("no such tasking pack")
    async with request.app[SESSIONS]() as session:
        release = await store.get_release(session, release_id, actor(request))
    disclosure.note(request, f"report_release:{release.id}", week=release.week, format=fmt)
    return release


@routes.get(PREFIX + "/released/{release:[0-9]+}")
@requires(Permission.EVIDENCE_REQUEST, discloses=Disclosure.PERSONAL, action="reports.release_read")
async def released_pack(request: web.Request) -> web.Response:
    """One pack sent to the caller (police edition), as it was sent."""
    release = await _release(request, "json")
    return web.json_response({**_police_view(release), "pack": release.content})


@routes.get(PREFIX + "/released/{release:[0-9]+}.pdf")
@requires(Permission.EVIDENCE_REQUEST, discloses=Disclosure.PERSONAL, action="reports.release_read",
          produces="application/pdf")
async def released_pdf(request: web.Request) -> web.Response:
    release = await _release(request, "pdf")
    body = await asyncio.to_thread(render.tasking_pdf, from_dict(release.content))
    return _file(body, "application/pdf", f"tasking-{release.week}-police.pdf")
