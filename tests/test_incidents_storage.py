"""storage.incidents on SQLite and PostgreSQL: the occurrence book's rules, bookmarks, holds,
evidence links, search, and the audit entry of every change."""

from __future__ import annotations

import pytest
from evidence_media import add_cameras
from sqlalchemy import select

from storage import Conflict, Invalid, NotFound
from storage.audit import AuditEntry, verify_chain
from storage.db import now_us, transaction
from storage.evidence import DAY_US, WindowSpec, create_request
from storage.holds import active_spans
from storage.incidents import (
    CATEGORIES,
    OUTCOMES,
    IncidentClosed,
    IncidentEntry,
    add_entry,
    attach_bookmark,
    close_incident,
    create_bookmark,
    get_incident,
    hold_footage,
    incident_holds,
    link_evidence,
    linked_requests,
    open_incident,
    search_bookmarks,
    search_incidents,
    update_incident,
)

HOUR_US = 3_600_000_000


async def actions(sessions, target: str) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(select(AuditEntry.action).where(AuditEntry.target == target).order_by(AuditEntry.seq))
        return list(rows.scalars())


def test_the_seed_categories_and_outcomes():
    assert list(CATEGORIES) == ["asb_personal", "asb_nuisance", "asb_environmental", "shoplifting", "violence",
                                "criminal_damage", "drugs", "vehicle_crime", "missing_vulnerable", "public_order",
                                "other"]
    assert list(OUTCOMES) == ["arrest_assisted", "offender_identified", "police_attended", "no_further_action"]
    assert all(CATEGORIES.values()) and all(OUTCOMES.values())


async def test_open_update_close_then_append_only(sessions):
    (cam,) = await add_cameras(sessions, ["Market Square"])
    seen = now_us() - 10 * 60 * 1_000_000
    async with transaction(sessions) as session:
        inc = await open_incident(session, by="op1", category="violence", camera_id=cam, occurred_at_us=seen,
                                  told=["police", "radio", "police"])
        iid = inc.id
        assert inc.site_id is not None  # the camera brought its site
        assert inc.told == ["police", "radio"] and inc.status == "open"
    async with transaction(sessions) as session:
        await add_entry(session, iid, by="op1", text="Two males fighting outside the bank")
        await update_incident(session, iid, by="op1", category="public_order", police_reference="CAD 1234",
                              outcome="police_attended")
    async with transaction(sessions) as session:
        closed = await close_incident(session, iid, by="sup1")
        assert closed.status == "closed" and closed.closed_by == "sup1" and closed.outcome == "police_attended"

    # Append-only from here: no field changes, through the API or straight through the ORM.
    async with transaction(sessions) as session:
        with pytest.raises(IncidentClosed):
            await update_incident(session, iid, by="op1", summary="rewritten")
    with pytest.raises(IncidentClosed):
        async with transaction(sessions) as session:
            inc = await get_incident(session, iid)
            inc.category = "other"
            await session.flush()
    with pytest.raises(IncidentClosed):
        async with transaction(sessions) as session:
            await session.delete(await get_incident(session, iid))
            await session.flush()
    async with transaction(sessions) as session:
        with pytest.raises(IncidentClosed):
            await close_incident(session, iid, by="sup1", outcome="arrest_assisted")
    # ... but the log still takes corrections, and entries themselves never change.
    async with transaction(sessions) as session:
        fix = await add_entry(session, iid, by="op1", kind="correction", text="It was three males, not two")
        fix_id = fix.id
    with pytest.raises(IncidentClosed):
        async with transaction(sessions) as session:
            entry = await session.get(IncidentEntry, fix_id)
            entry.text = "nothing happened"
            await session.flush()

    async with sessions() as session:
        inc = await get_incident(session, iid)
        assert (inc.category, inc.police_reference, inc.status) == ("public_order", "CAD 1234", "closed")
        assert [e.kind for e in inc.entries] == ["status", "note", "status", "status", "correction"]
        assert inc.entries[-1].text == "It was three males, not two"
        assert (await verify_chain(session)).ok
    assert await actions(sessions, f"incident:{iid}") == [
        "incident.open", "incident.note", "incident.update", "incident.close", "incident.correction"]


async def test_closing_needs_an_outcome_and_bad_input_is_refused(sessions):
    (cam,) = await add_cameras(sessions, ["Bus Station"])
    async with transaction(sessions) as session:
        iid = (await open_incident(session, by="op1", category="drugs", camera_id=cam)).id
    async with transaction(sessions) as session:
        with pytest.raises(Invalid, match="outcome"):
            await close_incident(session, iid, by="sup1")
        with pytest.raises(Invalid, match="category"):
            await open_incident(session, by="op1", category="jaywalking")
        with pytest.raises(Invalid, match="told"):
            await open_incident(session, by="op1", category="other", told=["fire brigade"])
        with pytest.raises(Invalid, match="future"):
            await open_incident(session, by="op1", category="other", occurred_at_us=now_us() + DAY_US)
        with pytest.raises(Invalid, match="camera"):
            await open_incident(session, by="op1", category="other", camera_id=99999)
        with pytest.raises(Invalid, match="cannot change"):
            await update_incident(session, iid, by="op1", status="closed")
        with pytest.raises(Invalid, match="kind"):
            await add_entry(session, iid, by="op1", kind="status", text="forged status line")
        with pytest.raises(Invalid, match="empty"):
            await add_entry(session, iid, by="op1", text="   ")
        with pytest.raises(NotFound):
            await add_entry(session, 99999, by="op1", text="x")
    async with transaction(sessions) as session:
        inc = await close_incident(session, iid, by="sup1", outcome="no_further_action", note="moved on")
        assert inc.entries[-1].text == "closed: No further action. moved on"


async def test_evidence_link_and_hold_on_footage(sessions):
    cam, other = await add_cameras(sessions, ["High Street", "Church Lane"])
    seen = now_us() - 3 * HOUR_US
    async with transaction(sessions) as session:
        iid = (await open_incident(session, by="op1", category="criminal_damage", camera_id=cam,
                                   occurred_at_us=seen)).id
        req = await create_request(session, requested_by="pc1",
                                   fields={k: "x" for k in ("officer_name", "collar_number", "force", "crime_reference",
                                                            "offence", "necessity", "lawful_basis", "authorised_by")},
                                   windows=[WindowSpec(cam, seen - HOUR_US, seen + HOUR_US)],
                                   hold_review_us=now_us() + DAY_US, max_window_us=DAY_US)
        rid = req.id
    async with transaction(sessions) as session:
        await link_evidence(session, iid, rid, by="op1")
        with pytest.raises(Conflict):
            await link_evidence(session, iid, rid, by="op1")
        with pytest.raises(Invalid):
            await link_evidence(session, iid, 99999, by="op1")
        hold = await hold_footage(session, iid, by="op1", review_us=now_us() + 30 * DAY_US,
                                  before_us=HOUR_US // 2, after_us=HOUR_US)
        hid = hold.id
    async with sessions() as session:
        assert await linked_requests(session, iid) == [rid]
        (held,) = await incident_holds(session, iid)
        assert held.id == hid and held.reference == f"incident:{iid}" and held.owner == "op1"
        spans = await active_spans(session)
        assert any(s.covers(cam, seen, seen + 1) for s in spans)
        assert not any(s.camera_id == other for s in spans)
        (w,) = held.windows
        assert (w.start_us, w.end_us) == (seen - HOUR_US // 2, seen + HOUR_US)
    # A closed incident still takes links and holds (they add, they do not rewrite).
    async with transaction(sessions) as session:
        await close_incident(session, iid, by="sup1", outcome="offender_identified")
    async with transaction(sessions) as session:
        await hold_footage(session, iid, by="sup1", review_us=now_us() + DAY_US, camera_ids=[other])
    async with transaction(sessions) as session:
        with pytest.raises(Invalid, match="no camera"):
            await hold_footage(session, (await open_incident(session, by="op1", category="other")).id, by="op1",
                               review_us=now_us() + DAY_US)
    assert await actions(sessions, f"incident:{iid}") == [
        "incident.open", "incident.link_evidence", "incident.hold", "incident.close", "incident.hold"]


async def test_bookmarks_moments_spans_search_and_attach(sessions):
    cam, other = await add_cameras(sessions, ["Car Park", "Station Road"])
    t = now_us() - HOUR_US
    async with transaction(sessions) as session:
        moment = await create_bookmark(session, by="op1", camera_id=cam, start_us=t, note="Red van, bay 12")
        span = await create_bookmark(session, by="op2", camera_id=other, start_us=t - HOUR_US, end_us=t - HOUR_US // 2,
                                     note="group loitering by the ticket machine")
        mid, sid = moment.id, span.id
        assert moment.end_us == moment.start_us
        with pytest.raises(Invalid, match="end"):
            await create_bookmark(session, by="op1", camera_id=cam, start_us=t, end_us=t - 1)
        with pytest.raises(Invalid, match="camera"):
            await create_bookmark(session, by="op1", camera_id=99999, start_us=t)
        with pytest.raises(NotFound):
            await create_bookmark(session, by="op1", camera_id=cam, start_us=t, incident_id=99999)
    async with sessions() as session:
        assert [b.id for b in await search_bookmarks(session)] == [mid, sid]
        assert [b.id for b in await search_bookmarks(session, camera_id=cam)] == [mid]
        assert [b.id for b in await search_bookmarks(session, text="TICKET")] == [sid]
        assert [b.id for b in await search_bookmarks(session, text="%")] == []  # a wildcard is a character
        assert [b.id for b in await search_bookmarks(session, from_us=t, to_us=t + 1)] == [mid]
        assert [b.id for b in await search_bookmarks(session, from_us=t - HOUR_US // 2 - 1, to_us=t)] == [sid]
        assert [b.id for b in await search_bookmarks(session, cameras=[other])] == [sid]
        assert await search_bookmarks(session, cameras=[]) == []
    async with transaction(sessions) as session:
        iid = (await open_incident(session, by="op1", category="vehicle_crime", camera_id=cam)).id
        jid = (await open_incident(session, by="op1", category="other", camera_id=cam)).id
        await attach_bookmark(session, mid, iid, by="op1")
        await attach_bookmark(session, mid, iid, by="op1")  # again: nothing to do
        with pytest.raises(Conflict):
            await attach_bookmark(session, mid, jid, by="op1")
    async with sessions() as session:
        assert [b.id for b in await search_bookmarks(session, incident_id=iid)] == [mid]
        inc = await get_incident(session, iid)
        assert inc.entries[-1].kind == "link" and f"bookmark {mid}" in inc.entries[-1].text
    assert await actions(sessions, f"bookmark:{mid}") == ["bookmark.create", "bookmark.attach"]


async def test_search_by_time_category_camera_site_status_text_and_narrowing(sessions):
    a, b = await add_cameras(sessions, ["North Gate", "South Gate"])
    t = now_us() - DAY_US
    async with transaction(sessions) as session:
        i1 = (await open_incident(session, by="op1", category="shoplifting", camera_id=a, occurred_at_us=t,
                                  summary="Boots, male in grey hoodie")).id
        i2 = (await open_incident(session, by="op2", category="shoplifting", camera_id=b, occurred_at_us=t + HOUR_US,
                                  location="outside 100% Pound shop")).id
        i3 = (await open_incident(session, by="op2", category="drugs", occurred_at_us=t + 2 * HOUR_US)).id
        await update_incident(session, i3, by="op2", outcome="no_further_action")
        await close_incident(session, i3, by="sup1")
        site_b = (await get_incident(session, i2)).site_id

    async def ids(**kw) -> list[int]:
        async with sessions() as session:
            return [i.id for i in await search_incidents(session, **kw)]

    assert await ids() == [i3, i2, i1]  # newest first by when it happened
    assert await ids(from_us=t + 1, to_us=t + 2 * HOUR_US) == [i2]
    assert await ids(category="shoplifting") == [i2, i1]
    assert await ids(camera_id=a) == [i1]
    assert await ids(site_id=site_b) == [i2, i1]  # both cameras are on the one site
    assert await ids(status="open") == [i2, i1]
    assert await ids(status="closed") == [i3]
    assert await ids(text="HOODIE") == [i1]
    assert await ids(text="100%") == [i2]
    assert await ids(limit=1, offset=1) == [i2]
    # Narrowed to camera a: its incidents, and those on no camera that the user opened (op2
    # opened i2 on camera b and i3 on none).
    assert await ids(cameras=[a]) == [i1]
    assert await ids(cameras=[a], user="op2") == [i3, i1]
    assert await ids(cameras=[], user="op1") == []
    with pytest.raises(Invalid):
        await ids(status="pending")
    with pytest.raises(Invalid):
        await ids(category="nope")

