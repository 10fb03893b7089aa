"""storage.evidence on SQLite and PostgreSQL: requests, holds, states, jobs, custody, links."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_media import add_cameras

from controlroom.evidence.verify import check_custody
from storage import Invalid, NotFound
from storage.db import now_us, transaction
from storage.evidence import (
    DAY_US,
    TRANSITIONS,
    JobState,
    RequestState,
    WindowSpec,
    add_custody,
    add_link,
    claim_next_job,
    close_request,
    create_request,
    custody_line,
    custody_log,
    decide,
    find_link,
    get_request,
    list_requests,
    move,
    queue_export,
    stale_jobs,
)
from storage.holds import active_spans
from storage.models import Hold

FIELDS = {k: f"{k} value" for k in ("officer_name", "collar_number", "force", "crime_reference", "offence",
                                     "necessity", "lawful_basis", "authorised_by")}
HOUR_US = 3_600_000_000


async def new_request(sessions, cam: int, by: str = "pc1") -> int:
    start = now_us() - 2 * HOUR_US
    async with transaction(sessions) as session:
        req = await create_request(session, requested_by=by, fields=FIELDS,
                                   windows=[WindowSpec(cam, start, start + HOUR_US)],
                                   hold_review_us=now_us() + DAY_US, max_window_us=DAY_US)
        return req.id


async def test_submission_places_a_hold_and_owner_scoping(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    rid = await new_request(sessions, cam)
    async with sessions() as session:
        req = await get_request(session, rid)
        hold = await session.get(Hold, req.hold_id)
        assert hold.reference == f"evidence:{rid}" and hold.owner == "pc1" and hold.released_us is None
        spans = await active_spans(session)
        assert any(s.covers(cam, req.windows[0].start_us + 1, req.windows[0].start_us + 2) for s in spans)
        assert req.exhibit_ref.endswith(f"{rid:06d}") and req.state == RequestState.SUBMITTED.value
        with pytest.raises(NotFound):
            await get_request(session, rid, owner="pc2")
        assert await list_requests(session, owner="pc2") == []
        assert [r.id for r in await list_requests(session, owner="pc1")] == [rid]


async def test_validation(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    now = now_us()
    bad = [
        ({**FIELDS, "offence": ""}, [WindowSpec(cam, now - HOUR_US, now)], "offence"),
        (FIELDS, [], "windows"),
        (FIELDS, [WindowSpec(cam, now, now - 1)], "end after"),
        (FIELDS, [WindowSpec(cam, now - 3 * DAY_US, now)], "at most"),
        (FIELDS, [WindowSpec(cam, now + HOUR_US, now + 2 * HOUR_US)], "future"),
        (FIELDS, [WindowSpec(cam + 100, now - HOUR_US, now)], "no camera"),
    ]
    for fields, windows, words in bad:
        with pytest.raises(Invalid, match=words):
            async with transaction(sessions) as session:
                await create_request(session, requested_by="pc1", fields=fields, windows=windows,
                                     hold_review_us=now + DAY_US, max_window_us=DAY_US)


async def test_states_and_close_releases_the_hold(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    rid = await new_request(sessions, cam)
    review = now_us() + 30 * DAY_US
    async with transaction(sessions) as session:
        req = await get_request(session, rid)
        with pytest.raises(Invalid):
            move(req, RequestState.READY)  # not from submitted
        with pytest.raises(Invalid, match="reason"):
            await decide(session, req, by="sgt", approve=True, reason=" ")
        job = await decide(session, req, by="sgt", approve=True, reason="ok")
        assert job.state == JobState.QUEUED.value and req.state == RequestState.APPROVED.value
        with pytest.raises(Invalid, match="already has export job"):
            await queue_export(session, req, by="sgt")
        with pytest.raises(Invalid, match="being exported"):
            await close_request(session, req, by="sgt", reason="done", review_us=review)
        job.state = JobState.CANCELLED.value
        await close_request(session, req, by="sgt", reason="done", review_us=review)
        hold = await session.get(Hold, req.hold_id)
        assert hold.released_by == "sgt" and hold.review_us == review
    assert TRANSITIONS[RequestState.CLOSED] == set()


async def test_claiming_is_exclusive_and_stale_jobs_are_found(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    for _ in range(2):
        rid = await new_request(sessions, cam)
        async with transaction(sessions) as session:
            await decide(session, await get_request(session, rid), by="sgt", approve=True, reason="ok")

    async def claim():
        async with transaction(sessions) as session:
            job = await claim_next_job(session)
            return job.id if job else None

    got = await asyncio.gather(*(claim() for _ in range(4)))
    assert sorted(j for j in got if j) == [1, 2] and got.count(None) == 2
    async with transaction(sessions) as session:
        assert {j.id for j in await stale_jobs(session, now_us() + 1)} == {1, 2}
        assert await stale_jobs(session, now_us() - 60_000_000) == []


async def test_custody_chain_is_signed_and_tamper_evident(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    rid = await new_request(sessions, cam)
    key = Ed25519PrivateKey.generate()
    async with transaction(sessions) as session:
        for action in ("request.submitted", "request.approved", "package.downloaded"):
            await add_custody(session, rid, "someone", action, key.sign, note="é")
    async with sessions() as session:
        lines = [custody_line(e) for e in await custody_log(session, rid)]
    import json

    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert [ln["seq"] for ln in lines] == [1, 2, 3]
    assert check_custody(data, key.public_key()) == []
    assert check_custody(data.replace(b"request.approved", b"request.refused"), key.public_key())
    dropped = b"".join(data.splitlines(keepends=True)[i] for i in (0, 2))
    assert any("does not follow" in p for p in check_custody(dropped, key.public_key()))


async def test_links_expire_and_are_stored_hashed(sessions):
    (cam,) = await add_cameras(sessions, ["Cam 1"])
    rid = await new_request(sessions, cam)
    async with transaction(sessions) as session:
        req = await get_request(session, rid)
        link = await add_link(session, req, token="tok-live", by="pc1", ttl_s=60)
        await add_link(session, req, token="tok-old", by="pc1", ttl_s=-1)
        assert link.token_sha256 == hashlib.sha256(b"tok-live").hexdigest()
    async with transaction(sessions) as session:
        assert (await find_link(session, "tok-live")).id == link.id
        for token in ("tok-old", "nope"):
            with pytest.raises(NotFound):
                await find_link(session, token)
