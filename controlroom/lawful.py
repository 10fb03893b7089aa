"""Lawful use: what the API, the CLI and the reminders share about RIPA authorisations and
subject access requests: their JSON shapes, the periodic reminder check and its loop, and the
report for an IPCO inspection. The rules themselves live in storage.ripa and storage.sar;
docs/design/lawful-use.md gives them with their legal basis.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlroom.background import watched
from controlroom.context import ALERTS, SESSIONS, SETTINGS
from controlroom.settings import LawfulSettings
from controlroom.timefmt import local_iso, us_to_iso
from storage import audit, redaction, ripa, sar
from storage.alerts import AlertHub, raise_alert
from storage.db import now_us, transaction
from storage.jobs import Job

log = logging.getLogger(__name__)
DAY_US = ripa.DAY_US


def _when(us: int | None) -> dict[str, str | None]:
    return {"utc": us_to_iso(us), "local": local_iso(us)}


def authorisation_json(a: ripa.Authorisation, now: int | None = None, *, full: bool = True) -> dict[str, Any]:
    """An authorisation with its computed state. ``full=False``: what an operator needs to link
    directed use to it (no grounds, no history)."""
    now = now_us() if now is None else now
    data: dict[str, Any] = {
        "id": a.id, "reference": a.reference, "kind": a.kind, "state": ripa.state_of(a, now).value,
        "subject": a.subject, "operation": a.operation, "cameras": list(a.camera_ids or []),
        "sites": list(a.site_ids or []), "start": _when(a.start_us), "expires": _when(a.expires_us),
        "next_review": _when(a.next_review_us), "authorising_officer": a.authorising_officer,
    }
    if full:
        data.update({
            "grounds": a.grounds, "authorised": _when(a.authorised_us), "renewals": a.renewals,
            "created_by": a.created_by, "created": _when(a.created_us),
            "cancelled": _when(a.cancelled_us), "cancelled_by": a.cancelled_by, "cancel_reason": a.cancel_reason,
            "events": [{"kind": e.kind, "at": _when(e.at_us), "by": e.by, "officer": e.officer, "note": e.note,
                        "next_review": _when(e.next_review_us), "expires": _when(e.expires_us)} for e in a.events],
        })
    return data


def use_json(u: ripa.DirectedUse, reference: str = "") -> dict[str, Any]:
    return {"id": u.id, "authorisation_id": u.authorisation_id, "reference": reference, "camera_id": u.camera_id,
            "operator": u.operator, "purpose": u.purpose, "started": _when(u.started_us), "ended": _when(u.ended_us)}


def job_json(job: Job) -> dict[str, Any]:
    """A SAR redaction job (a row of the job queue: controlroom.redaction.runner), its progress
    and its package."""
    seen = redaction.progress_of(job)
    result = seen.get("result") or {}
    done, total = int(seen.get("done_frames", 0)), int(seen.get("total_frames", 0))
    return {
        "id": job.id, "state": job.state, "created_by": job.created_by, "created_utc": us_to_iso(job.created_us),
        "started_utc": us_to_iso(job.started_us) if job.started_us else None,
        "finished_utc": us_to_iso(job.finished_us) if job.finished_us else None,
        "attempt": job.attempt, "node": job.node_id, "cancel_requested": job.cancel_requested,
        "stage": seen.get("stage", ""), "done_frames": done, "total_frames": total,
        "progress": round(min(done, total) / total, 3) if total else 0.0,
        "error": job.error, "package": result.get("package"), "package_bytes": result.get("package_bytes", 0),
        "manifest_sha256": result.get("manifest_sha256"), "obscured": result.get("obscured", 0),
        "left_visible": result.get("left_visible", 0),
    }


def mark_json(m: redaction.RedactionMark) -> dict[str, Any]:
    return {"id": m.id, "window": m.window_id, "kind": m.kind, "frame": m.frame, "box": [m.x, m.y, m.w, m.h],
            "until_frame": m.until_frame, "note": m.note, "by": m.by, "at_utc": us_to_iso(m.at_us)}


def sar_json(s: sar.SubjectAccessRequest, now: int | None = None) -> dict[str, Any]:
    now = now_us() if now is None else now
    closed = sar.SarState(s.state) in sar.CLOSED
    days_left = None if s.deadline_us is None or closed else (s.deadline_us - now) / DAY_US
    return {
        "id": s.id, "reference": s.reference, "state": s.state, "requester_name": s.requester_name,
        "requester_contact": s.requester_contact, "received": _when(s.received_us),
        "identity_method": s.identity_method, "identity_verified_by": s.identity_verified_by,
        "identity_verified": _when(s.identity_verified_us), "description": s.description,
        "places_times": s.places_times, "clock_start": _when(s.clock_start_us),
        # The deadline is the whole of its last day: ``deadline_us`` is 00:00 London the day after.
        "deadline": _when(s.deadline_us), "deadline_day": local_iso(s.deadline_us - 1)[:10] if s.deadline_us else None,
        "days_left": None if days_left is None else round(days_left, 2),
        "overdue": bool(days_left is not None and days_left <= 0),
        "extended": s.extended_us is not None, "extension_reason": s.extension_reason, "extended_by": s.extended_by,
        "closed": _when(s.closed_us), "closed_by": s.closed_by, "outcome": s.outcome, "exemption": s.exemption,
        "hold_id": s.hold_id, "created_by": s.created_by,
        "windows": [{"id": w.id, "camera_id": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us),
                     "from_local": local_iso(w.start_us), "to_local": local_iso(w.end_us), "note": w.note,
                     "added_by": w.added_by} for w in s.windows],
    }


# --- reminders ------------------------------------------------------------------------------

def _dues(settings: LawfulSettings, now: int, auths: list[ripa.Authorisation],
          sars: list[sar.SubjectAccessRequest]) -> list[tuple[object, list]]:
    out: list[tuple[object, list]] = []
    for a in auths:
        due = ripa.dues(a, now, review_warn_us=int(settings.ripa_review_warn_days * DAY_US),
                        expiry_warn_us=int(settings.ripa_expiry_warn_days * DAY_US))
        if due:
            out.append((a, due))
    for s in sars:
        due = sar.dues(s, now, remind_us=int(settings.sar_remind_days * DAY_US))
        if due:
            out.append((s, due))
    return out


async def check_reminders(sessions: async_sessionmaker[AsyncSession], hub: AlertHub | None,
                          settings: LawfulSettings, now: int | None = None) -> list[dict[str, Any]]:
    """One tick: raise every alert now due (RIPA reviews, expiries; SAR deadlines) that was not
    raised before, and remember it on the row in the same transaction. Returns the alerts.

    It reads first and opens a write transaction only when something is due (most ticks write
    nothing); inside it, the rows are read again, so two processes never raise the same alert."""
    now = now_us() if now is None else now
    async with sessions() as session:
        if not _dues(settings, now, await ripa.list_all(session), await sar.list_all(session, open_only=True)):
            return []
    raised: list[dict[str, Any]] = []
    async with transaction(sessions) as session:
        auths = list((await session.execute(select(ripa.Authorisation).with_for_update())).scalars())
        sars = list((await session.execute(select(sar.SubjectAccessRequest).where(
            sar.SubjectAccessRequest.state.not_in([c.value for c in sar.CLOSED])).with_for_update())).scalars())
        for row, due in _dues(settings, now, auths, sars):
            for d in due:
                if isinstance(row, ripa.Authorisation):
                    alert = await raise_alert(session, hub, d.kind, d.message, reference=row.reference,
                                              expires=us_to_iso(row.expires_us), review=us_to_iso(row.next_review_us))
                else:
                    alert = await raise_alert(session, hub, d.kind, d.message, reference=row.reference,
                                              deadline=us_to_iso(row.deadline_us))
                raised.append(alert.to_dict())
            keys = [d.key for d in due]
            if isinstance(row, ripa.Authorisation):
                await ripa.mark_alerted(session, row, keys)
            else:
                await sar.mark_alerted(session, row, keys)
    return raised


async def reminders_ctx(app: web.Application) -> AsyncIterator[None]:
    """The reminder loop: :func:`check_reminders` every ``lawful.check_interval_s``. A failed tick
    is logged with its traceback and tried again at the next one."""
    settings = app[SETTINGS].lawful

    async def check() -> None:
        await check_reminders(app[SESSIONS], app[ALERTS], settings)

    loop = watched(app, "lawful", settings.check_interval_s, check, what="RIPA/SAR reminder check", log=log)
    task = asyncio.create_task(loop.run(), name="lawful-reminders")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- the IPCO report ------------------------------------------------------------------------

async def ripa_report(session: AsyncSession, from_us: int, to_us: int) -> dict[str, Any]:
    """Every authorisation in force at any time in [from_us, to_us) (or granted then), with its
    reviews, renewals, cancellation, directed uses, and the audit entries linked to it in that
    period (its own ``ripa.*`` entries, and every PTZ action carrying its reference)."""
    now = now_us()
    chosen = []
    for a in await ripa.list_all(session):
        ended = min(a.expires_us, a.cancelled_us) if a.cancelled_us is not None else a.expires_us
        if a.authorised_us < to_us and ended >= from_us:
            chosen.append(a)
    refs = {a.reference: a for a in chosen}
    linked: dict[str, list[dict[str, Any]]] = {ref: [] for ref in refs}
    async for e in audit.entries(session, from_us, to_us):
        if not (e.action.startswith("ripa.") or e.action.startswith("ptz.")):
            continue
        details = json.loads(e.details or "{}")
        ref = details.get("ripa") or (e.target.removeprefix("ripa:") if e.target.startswith("ripa:") else None)
        if ref in linked:
            linked[ref].append({"seq": e.seq, "at": _when(e.at_us), "actor": e.actor, "action": e.action,
                                "target": e.target, "details": details})
    uses: dict[int, list[dict[str, Any]]] = {a.id: [] for a in chosen}
    for a in chosen:
        for u in await ripa.uses_of(session, a.id):
            uses[a.id].append(use_json(u, a.reference))
    return {
        "from": _when(from_us), "to": _when(to_us), "generated": _when(now),
        "authorisations": [{**authorisation_json(a, now), "directed_uses": uses[a.id], "audit": linked[a.reference]}
                           for a in chosen],
    }


REPORT_COLUMNS = ["reference", "kind", "state", "row", "at_utc", "at_local", "by", "detail"]


def report_csv(report: dict[str, Any]) -> str:
    """One row per authorisation, per review/renewal/cancellation, per directed use and per linked
    audit entry, in that order, each with the authorisation's reference."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for a in report["authorisations"]:
        head = [a["reference"], a["kind"], a["state"]]
        writer.writerow([*head, "authorisation", a["authorised"]["utc"], a["authorised"]["local"],
                         a["authorising_officer"],
                         f"subject: {a['subject']}; grounds: {a['grounds']}; start {a['start']['utc']}; "
                         f"expires {a['expires']['utc']}; cameras {a['cameras']}; sites {a['sites']}"])
        for e in a["events"]:
            writer.writerow([*head, e["kind"], e["at"]["utc"], e["at"]["local"], e["officer"] or e["by"],
                             f"{e['note']}; next review {e['next_review']['utc']}; expires {e['expires']['utc']}"])
        for u in a["directed_uses"]:
            writer.writerow([*head, "directed_use", u["started"]["utc"], u["started"]["local"], u["operator"],
                             f"camera {u['camera_id']}; ended {u['ended']['utc']}; {u['purpose']}"])
        for e in a["audit"]:
            writer.writerow([*head, "audit", e["at"]["utc"], e["at"]["local"], e["actor"],
                             f"#{e['seq']} {e['action']} {e['target']} {json.dumps(e['details'], sort_keys=True)}"])
    return out.getvalue()
