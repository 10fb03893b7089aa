"""RIPA authorisations and subject access requests in storage: the calendar rules (pure), the
register's states, renewals, directed use and its audit link, SAR deadlines and holds; on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from evidence_media import add_cameras
from sqlalchemy import select

from storage import Invalid, NotFound, ripa, sar
from storage.audit import AuditEntry, verify_chain
from storage.db import now_us, transaction
from storage.holds import active_spans
from storage.models import Camera, Hold
from storage.months import (
    LONDON,
    corresponding_date,
    day_start_us,
    local_date,
    month_deadline,
    months_beginning_with,
)

DAY = ripa.DAY_US
HOUR = 3_600_000_000


def _london(y: int, m: int, d: int) -> int:
    return day_start_us(date(y, m, d))


def _local(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).astimezone(LONDON).isoformat()


# --- calendar rules -------------------------------------------------------------------------

def test_corresponding_dates_clamp_to_the_months_end():
    assert corresponding_date(date(2026, 1, 31), 1) == (date(2026, 2, 28), True)
    assert corresponding_date(date(2028, 1, 31), 1) == (date(2028, 2, 29), True)  # leap year
    assert corresponding_date(date(2026, 11, 30), 3) == (date(2027, 2, 28), True)
    assert corresponding_date(date(2026, 12, 15), 1) == (date(2027, 1, 15), False)


def test_three_months_beginning_with_a_day_end_the_day_before_the_corresponding_date():
    # Granted on 1 April: in force to the end of 30 June (the period includes 1 April).
    assert months_beginning_with(date(2026, 4, 1), 3) == _london(2026, 7, 1)
    # No 31 April... 31 January + 3 months: to the end of 30 April.
    assert months_beginning_with(date(2026, 1, 31), 3) == _london(2026, 5, 1)
    # Midnight in London across the clock change: 1 July 00:00 BST is 30 June 23:00 UTC.
    assert _local(_london(2026, 7, 1)) == "2026-07-01T00:00:00+01:00"
    assert _local(months_beginning_with(date(2026, 8, 1), 3)) == "2026-11-01T00:00:00+00:00"


def test_sar_deadline_is_the_corresponding_date_or_the_months_last_day():
    # Received 3 March: the whole of 3 April is in time.
    assert month_deadline(date(2026, 3, 3), 1) == _london(2026, 4, 4)
    # Received 31 January: no 31 February, so 28 February is the last day.
    assert month_deadline(date(2026, 1, 31), 1) == _london(2026, 3, 1)
    # Extended by two further months: 3 June.
    assert month_deadline(date(2026, 3, 3), 3) == _london(2026, 6, 4)


def test_the_calendar_day_is_londons_not_utcs():
    # 23:30 UTC on 30 June is 00:30 on 1 July in London: the day a request arrived is 1 July.
    at = int(datetime(2026, 6, 30, 23, 30, tzinfo=UTC).timestamp()) * 1_000_000
    assert local_date(at) == date(2026, 7, 1)
    assert sar.deadline_for(at, extended=False) == _london(2026, 8, 2)


def _auth(**kw) -> ripa.Authorisation:
    base = dict(reference="R1", kind="directed_surveillance", authorised_us=0, start_us=100, expires_us=1000,
                next_review_us=500, cancelled_us=None, alerted=[])
    base.update(kw)
    return ripa.Authorisation(**base)


def test_state_is_computed_from_the_dates():
    a = _auth()
    assert ripa.state_of(a, 50) == ripa.State.PENDING
    assert ripa.state_of(a, 100) == ripa.State.LIVE
    assert ripa.state_of(a, 500) == ripa.State.REVIEW_DUE
    assert ripa.state_of(a, 1000) == ripa.State.EXPIRED
    assert ripa.state_of(_auth(cancelled_us=300), 400) == ripa.State.CANCELLED


def test_dues_are_raised_once_per_date():
    a = _auth()
    assert ripa.dues(a, 200, review_warn_us=100, expiry_warn_us=100) == []
    assert [d.kind for d in ripa.dues(a, 450, review_warn_us=100, expiry_warn_us=100)] == ["ripa_review"]
    a.alerted = ["review:500"]
    assert ripa.dues(a, 450, review_warn_us=100, expiry_warn_us=100) == []
    assert [d.kind for d in ripa.dues(a, 950, review_warn_us=100, expiry_warn_us=100)] == ["ripa_expiry"]
    assert [d.kind for d in ripa.dues(a, 1000, review_warn_us=100, expiry_warn_us=100)] == ["ripa_expired"]
    assert ripa.dues(_auth(cancelled_us=300), 1000, review_warn_us=100, expiry_warn_us=100) == []


# --- the RIPA register ----------------------------------------------------------------------

async def _create(session, **kw) -> ripa.Authorisation:
    args = dict(by="sup", reference="OP-ARDEN-1", kind="directed_surveillance", authorising_officer="Supt A Jones",
                grounds="prevention of crime: supply of controlled drugs", subject="Male, 30s, red jacket",
                authorised_us=now_us())
    args.update(kw)
    return await ripa.create(session, **args)


async def test_register_expiry_renewal_cancellation_and_audit(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    async with transaction(sessions) as session:
        auth = await _create(session, camera_ids=[cam])
        assert auth.expires_us == ripa.statutory_expiry(ripa.Kind.DIRECTED, auth.authorised_us)
        assert ripa.state_of(auth, now_us()) == ripa.State.LIVE
        with pytest.raises(Invalid, match="already in the register"):
            await _create(session)
    async with transaction(sessions) as session:
        with pytest.raises(Invalid, match="at most 3 months"):
            await _create(session, reference="OP-2", expires_us=now_us() + 200 * DAY)
        with pytest.raises(Invalid, match="kind"):
            await _create(session, reference="OP-3", kind="wiretap")
        with pytest.raises(Invalid, match="no camera"):
            await _create(session, reference="OP-4", camera_ids=[9999])
    async with transaction(sessions) as session:
        auth = await ripa.get(session, "OP-ARDEN-1", for_update=True)
        old = auth.expires_us
        await ripa.review(session, auth, by="sup", officer="Supt A Jones", note="still necessary",
                          next_review_us=now_us() + 7 * DAY)
        await ripa.renew(session, auth, by="sup", officer="Supt A Jones", note="operation continues")
        assert auth.expires_us == ripa.renewed_expiry(ripa.Kind.DIRECTED, old)
        assert 85 * DAY < auth.expires_us - old < 95 * DAY
        assert auth.renewals == 1
    async with transaction(sessions) as session:
        auth = await ripa.get(session, str(auth.id), for_update=True)
        await ripa.cancel(session, auth, by="sup", officer="Supt A Jones", reason="suspect arrested")
        assert ripa.state_of(auth, now_us()) == ripa.State.CANCELLED
        with pytest.raises(Invalid, match="cancelled"):
            await ripa.renew(session, auth, by="sup", officer="x", note="y")
    async with sessions() as session:
        auth = await ripa.get(session, "OP-ARDEN-1")
        assert [e.kind for e in auth.events] == ["review", "renewal", "cancellation"]
        actions = (await session.execute(select(AuditEntry.action).where(AuditEntry.target == "ripa:OP-ARDEN-1")
                                         .order_by(AuditEntry.seq))).scalars().all()
        assert actions == ["ripa.create", "ripa.review", "ripa.renew", "ripa.cancel"]
        assert (await verify_chain(session)).ok
        with pytest.raises(NotFound):
            await ripa.get(session, "nope")


async def test_directed_use_links_ptz_audit_and_flags_actions_outside_the_window(sessions):
    cam1, cam2 = await add_cameras(sessions, ["Cam 1", "Cam 2"])
    async with transaction(sessions) as session:
        auth = await _create(session, camera_ids=[cam1], expires_us=now_us() + HOUR)
        c1, c2 = await session.get(Camera, cam1), await session.get(Camera, cam2)
        with pytest.raises(Invalid, match="does not cover"):
            await ripa.start_use(session, auth, c2, operator="op1")
        use = await ripa.start_use(session, auth, c1, operator="op1", purpose="following suspect for DC Smith")
        assert await ripa.audit_link(session, "op1", cam1) == {"ripa": "OP-ARDEN-1", "directed_use": use.id}
        assert await ripa.audit_link(session, "op2", cam1) == {}  # another operator: not linked
        # The authorisation lapses while the use is open: actions are flagged as outside it.
        auth.expires_us = now_us() - 1
        link = await ripa.audit_link(session, "op1", cam1)
        assert link["ripa_outside"] is True and link["ripa_state"] == "expired"
        with pytest.raises(Invalid, match="expired"):
            await ripa.start_use(session, auth, c1, operator="op3")
        with pytest.raises(NotFound):
            await ripa.end_use(session, use.id, by="op2", operator="op2")
        await ripa.end_use(session, use.id, by="op1", operator="op1")
        assert await ripa.audit_link(session, "op1", cam1) == {}


# --- subject access requests ----------------------------------------------------------------

async def _sar(session, **kw) -> sar.SubjectAccessRequest:
    args = dict(by="dpo", requester_name="Jane Doe", description="woman, 40s, green coat, pushchair",
                places_times="Market Square, Saturday about 14:00", received_us=now_us() - DAY)
    args.update(kw)
    return await sar.create(session, **args)


async def test_sar_clock_states_extension_and_closing(sessions):
    async with transaction(sessions) as session:
        waiting = await _sar(session)
        assert waiting.state == "awaiting_identity" and waiting.deadline_us is None
        assert waiting.reference.startswith("SAR-")
        await sar.verify_identity(session, waiting, by="dpo", method="passport seen at the counter")
        assert waiting.state == "open"
        # The clock starts on the day identity was verified (today), not the day of receipt.
        assert waiting.deadline_us == month_deadline(local_date(now_us()), 1)
        opened = await _sar(session, identity_method="driving licence copy and utility bill")
        assert opened.deadline_us == month_deadline(local_date(opened.received_us), 1)
        with pytest.raises(Invalid, match="reason"):
            await sar.extend(session, opened, by="dpo", reason=" ")
        await sar.extend(session, opened, by="dpo", reason="numerous cameras and long windows")
        assert opened.deadline_us == month_deadline(local_date(opened.received_us), 3)
        with pytest.raises(Invalid, match="already extended"):
            await sar.extend(session, opened, by="dpo", reason="again")
        with pytest.raises(Invalid, match="exemption"):
            await sar.close(session, opened, by="dpo", to="refused", outcome="not disclosed")
        await sar.close(session, opened, by="dpo", to="refused", outcome="footage shows only others",
                        exemption="DPA 2018 Sch. 2 para 2 (crime and taxation)")
        with pytest.raises(Invalid, match="cannot become"):
            await sar.close(session, opened, by="dpo", to="disclosed", outcome="x")
        with pytest.raises(Invalid, match="future"):
            await _sar(session, received_us=now_us() + DAY)


async def test_sar_windows_are_held_while_open_and_released_on_close(sessions):
    cam1, cam2 = await add_cameras(sessions, ["Cam 1", "Cam 2"])
    start = now_us() - 2 * HOUR
    async with transaction(sessions) as session:
        s = await _sar(session, identity_method="passport")
        await sar.add_window(session, s, by="dpo", camera_id=cam1, start_us=start, end_us=start + HOUR,
                             max_window_us=24 * HOUR, hold_review_us=now_us() + 30 * DAY)
        w2 = await sar.add_window(session, s, by="dpo", camera_id=cam2, start_us=start, end_us=start + 600_000_000,
                                  max_window_us=24 * HOUR, hold_review_us=now_us() + 30 * DAY)
        with pytest.raises(Invalid, match="no camera"):
            await sar.add_window(session, s, by="dpo", camera_id=9999, start_us=start, end_us=start + 1,
                                 max_window_us=HOUR, hold_review_us=0)
        sar_id, hold_id = s.id, s.hold_id
    async with sessions() as session:
        hold = await session.get(Hold, hold_id)
        assert hold.reference == f"sar:{sar_id}"
        spans = await active_spans(session)
        assert any(sp.covers(cam1, start, start + 1) for sp in spans)
        assert any(sp.covers(cam2, start, start + 1) for sp in spans)
    async with transaction(sessions) as session:
        s = await sar.get(session, sar_id, for_update=True)
        await sar.remove_window(session, s, w2.id, by="dpo")
    async with sessions() as session:
        spans = await active_spans(session)
        assert not any(sp.covers(cam2, start, start + 1) for sp in spans)
        assert any(sp.covers(cam1, start, start + 1) for sp in spans)
    async with transaction(sessions) as session:
        s = await sar.get(session, sar_id, for_update=True)
        await sar.close(session, s, by="dpo", to="disclosed", outcome="one redacted clip sent by secure e-mail")
    async with sessions() as session:
        assert (await session.get(Hold, hold_id)).released_us is not None
        assert not any(sp.covers(cam1, start, start + 1) for sp in await active_spans(session))
        actions = (await session.execute(select(AuditEntry.action).where(AuditEntry.target.like("sar:%"))
                                         .order_by(AuditEntry.seq))).scalars().all()
        assert actions == ["sar.create", "sar.window_add", "sar.window_add", "sar.window_remove", "sar.close"]


def test_sar_reminders():
    s = sar.SubjectAccessRequest(reference="SAR-1", state="open", deadline_us=1000, alerted=[])
    assert sar.dues(s, 100, remind_us=500) == []
    assert [d.kind for d in sar.dues(s, 600, remind_us=500)] == ["sar_due"]
    assert [d.kind for d in sar.dues(s, 1000, remind_us=500)] == ["sar_overdue"]
    s.alerted = ["overdue:1000"]
    assert sar.dues(s, 1000, remind_us=500) == []
    s.state = "disclosed"
    s.alerted = []
    assert sar.dues(s, 2000, remind_us=500) == []


async def test_ids_beyond_the_columns_name_nothing(sessions):
    """INTEGER ids (int4 on PostgreSQL): a larger number is NotFound, not a driver error."""
    async with transaction(sessions) as session:
        for ref in ("9999999999999", 2**40):
            with pytest.raises(NotFound):
                await ripa.get(session, ref)
            with pytest.raises(NotFound):
                await sar.get(session, ref)
        with pytest.raises(NotFound):
            await ripa.end_use(session, 2**40, by="op")
        with pytest.raises(Invalid, match="no camera"):
            await _create(session, reference="OP-BIG", camera_ids=[2**40])
