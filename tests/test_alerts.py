"""Alerts are published to live subscribers only once their transaction has committed."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from storage.alerts import Alert, AlertHub, raise_alert
from storage.db import transaction


async def test_an_alert_is_published_after_its_commit_and_never_after_a_rollback(sessions):
    hub = AlertHub()
    queue = hub.subscribe()

    async with transaction(sessions) as session:
        alert = await raise_alert(session, hub, "camera_offline", "Town Centre 01: recording stopped", None)
        assert queue.empty(), "published before its transaction committed"
        async with sessions() as other:  # what a subscriber would look up on hearing of it
            assert (await other.execute(select(Alert).where(Alert.id == alert.id))).first() is None
    published = await asyncio.wait_for(queue.get(), 1)
    assert published["id"] == alert.id and published["kind"] == "camera_offline"
    async with sessions() as other:
        assert (await other.execute(select(Alert).where(Alert.id == published["id"]))).scalar_one()

    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            await raise_alert(session, hub, "anpr_hit", "AB12CDE on hotlist", None)
            raise RuntimeError("the hit's transaction fails")
    await asyncio.sleep(0.05)
    assert queue.empty(), "an alert of a rolled-back transaction was published"
    async with transaction(sessions) as session:  # and nothing of it lingers for the next commit
        pass
    await asyncio.sleep(0.05)
    assert queue.empty()
