"""The job queue (storage.jobs) and the job runner (controlroom.jobs), on SQLite and PostgreSQL:
taking, the lease and its fence, unique jobs, periodic jobs, every way a job ends. The same with
real processes and a ``kill -9`` is tests/test_cluster_jobs.py."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from controlroom.context import HEALTH_NOTES, SESSIONS
from controlroom.jobs import JobRunner
from storage import jobs
from storage.db import make_engine, make_sessionmaker, transaction
from storage.jobs import Job, JobCancelled, JobFailed, JobLost, JobState
from storage.migrate import upgrade
from storage.nodes import heartbeat, register


async def _claim(sessions, node: str, kinds=("k",), ttl_s: float = 60.0):
    async with transaction(sessions) as session:
        return await jobs.claim_next(session, node, list(kinds), ttl_s)


async def _job(sessions, job_id: int) -> Job:
    async with sessions() as session:
        return await session.get(Job, job_id)


async def test_a_job_is_taken_once_and_fenced_by_node_and_attempt(sessions):
    async with transaction(sessions) as session:
        job_id = await jobs.enqueue(session, "k", {"n": 1}, by="alice")
    assert await _claim(sessions, "a", kinds=["other"]) is None  # only the kinds it runs
    job, fence = await _claim(sessions, "a", ttl_s=2.0)
    assert (job.id, job.data(), fence.attempt, job.node_id) == (job_id, {"n": 1}, 1, "a")
    assert await _claim(sessions, "b") is None  # running under a live lease: nobody else takes it
    async with transaction(sessions) as session:
        await jobs.save_checkpoint(session, fence, {"done": 3})
    # Node a stops renewing: its lease runs out (a lease short enough to wait for here would run
    # out before the check above on a loaded machine: seen at load 50).
    await asyncio.sleep(2.2)
    job, fence_b = await _claim(sessions, "b")
    assert (fence_b.attempt, job.node_id, job.saved()) == (2, "b", {"done": 3})  # resumes from there
    with pytest.raises(JobLost, match="attempt 1 on node a"):  # a, back from its pause, is refused
        async with transaction(sessions) as session:
            await jobs.finish(session, fence, JobState.DONE)
    with pytest.raises(JobLost):
        async with transaction(sessions) as session:
            await jobs.save_checkpoint(session, fence, {"done": 0})
    async with transaction(sessions) as session:
        await jobs.finish(session, fence_b, JobState.DONE)
    job = await _job(sessions, job_id)
    assert (job.state, job.node_id, job.attempt, job.saved()) == ("done", "b", 2, {"done": 3})
    assert await _claim(sessions, "c") is None  # done is done


async def test_the_node_heartbeat_renews_its_jobs_and_a_restart_gives_them_back(sessions):
    async with transaction(sessions) as session:
        await register(session, "n1", ("jobs",), 0, ttl_s=15)
        job_id = await jobs.enqueue(session, "k")
    _, fence = await _claim(sessions, "n1", ttl_s=2.0)
    for _ in range(3):  # renewed by the heartbeat past its first lease: never free to take
        await asyncio.sleep(0.8)
        async with transaction(sessions) as session:
            await heartbeat(session, "n1", 2.0)
        assert await _claim(sessions, "n2") is None
    async with transaction(sessions) as session:
        assert await jobs.requeue_node(session, "n1", "restarted") == [job_id]
    job, fence2 = await _claim(sessions, "n2")
    assert fence2.attempt == 2 and job.error == "restarted"


async def test_unique_jobs_run_one_at_a_time_and_periodic_ones_when_due(sessions):
    async with transaction(sessions) as session:
        first = await jobs.enqueue(session, "retention", unique_key="retention")
        assert await jobs.enqueue(session, "retention", unique_key="retention") is None
        assert not await jobs.due(session, "retention", every_s=0.2, retry_s=0.1)  # one is queued
        assert await jobs.update_queued(session, "retention", {"emergency": True}) == 1
    job, fence = await _claim(sessions, "a", kinds=["retention"])
    assert job.id == first and job.data() == {"emergency": True}
    async with transaction(sessions) as session:
        assert await jobs.enqueue(session, "retention", unique_key="retention") is None  # running
        await jobs.finish(session, fence, JobState.FAILED, "disk away")
        assert not await jobs.due(session, "retention", every_s=60, retry_s=0.2)  # retry_s after a failure
    await asyncio.sleep(0.3)
    async with transaction(sessions) as session:
        assert await jobs.due(session, "retention", every_s=60, retry_s=0.2)
        assert await jobs.enqueue(session, "retention", unique_key="retention") is not None


@pytest.mark.postgres
async def test_nodes_taking_at_once_take_different_jobs(pg_url):
    """Eight nodes, each on its own connections, take from 40 jobs at once: SKIP LOCKED."""
    engines = [make_engine(pg_url) for _ in range(8)]
    await upgrade(engines[0])
    pools = [make_sessionmaker(e) for e in engines]
    try:
        async with transaction(pools[0]) as session:
            for i in range(40):
                await jobs.enqueue(session, "k", {"i": i})

        async def node(i: int) -> list[int]:
            got = []
            while (taken := await _claim(pools[i], f"n{i}")) is not None:
                got.append(taken[0].id)
            return got

        taken = await asyncio.gather(*(node(i) for i in range(8)))
        every = [j for t in taken for j in t]
        assert sorted(every) == sorted(set(every)) and len(every) == 40
        assert sum(1 for t in taken if t) > 1  # shared out, not one node taking all
    finally:
        for e in engines:
            await e.dispose()


@pytest.mark.postgres
async def test_two_schedules_checking_at_once_queue_one_periodic_run(pg_url):
    """Seen at a cluster's start: node B found retention due, node A then queued, ran and ended a
    run, and B's queueing (the unique key free again) made a second run back to back. The check
    and the queueing of B now hold an advisory lock of the kind: A's check waits for B's commit
    and finds B's run queued."""
    engines = [make_engine(pg_url) for _ in range(2)]
    await upgrade(engines[0])
    pool_a, pool_b = (make_sessionmaker(e) for e in engines)

    async def node_a_cycle() -> bool:
        async with transaction(pool_a) as session:
            if not await jobs.due(session, "retention", every_s=3600, retry_s=60):
                return False
            await jobs.enqueue(session, "retention", unique_key="retention")
        job, fence = await _claim(pool_a, "a", kinds=["retention"])
        async with transaction(pool_a) as session:
            await jobs.finish(session, fence, JobState.DONE)
        return True

    try:
        async with transaction(pool_b) as session:
            assert await jobs.due(session, "retention", every_s=3600, retry_s=60)
            a_cycle = asyncio.create_task(node_a_cycle())
            await asyncio.sleep(1.0)  # A's whole cycle, if nothing holds it
            await jobs.enqueue(session, "retention", unique_key="retention")
        assert not await asyncio.wait_for(a_cycle, 10), "A queued a run while B was queueing one"
        async with pool_a() as session:
            assert len((await session.scalars(select(Job).where(Job.kind == "retention"))).all()) == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_the_runner_ends_each_job_by_what_its_kind_did(sessions):
    started = asyncio.Event()

    async def ok(ctx):
        await ctx.save({"step": 1})

    async def cancelled(ctx):
        raise JobCancelled("asked to")

    async def failed(ctx):
        raise JobFailed("no footage")

    async def broken(ctx):
        raise RuntimeError("bug")

    async def slow(ctx):
        started.set()
        await asyncio.sleep(60)

    kinds = {"ok": ok, "cancelled": cancelled, "failed": failed, "broken": broken, "slow": slow}
    runner = JobRunner({SESSIONS: sessions, HEALTH_NOTES: {}}, "local", ttl_s=5, beat_s=1, kinds=kinds, poll_s=0.1)
    ids = {}
    async with transaction(sessions) as session:
        for kind in kinds:
            ids[kind] = await jobs.enqueue(session, kind)
    for _ in range(4):
        assert await runner.run_once() is not None
    ended = {k: await _job(sessions, i) for k, i in ids.items()}
    assert {k: (j.state, j.error) for k, j in ended.items() if k != "slow"} == {
        "ok": ("done", ""), "cancelled": ("cancelled", "asked to"), "failed": ("failed", "no footage"),
        "broken": ("failed", "RuntimeError: bug")}
    assert ended["ok"].saved() == {"step": 1}
    # A clean stop gives a running job back at once (queued, taken by the next runner).
    await runner.start()
    await asyncio.wait_for(started.wait(), 10)
    assert (await _job(sessions, ids["slow"])).state == "running"
    await runner.stop()
    job = await _job(sessions, ids["slow"])
    assert (job.state, job.node_id, job.error) == ("queued", None, "its node stopped; queued again")
    async with sessions() as session:
        assert [j.kind for j in await jobs.active(session)] == ["slow"]
        assert (await session.scalars(select(Job.attempt).where(Job.id == ids["slow"]))).one() == 1


@pytest.mark.postgres
async def test_a_runner_stopped_while_a_done_job_is_recorded_still_records_it(pg_url):
    """The kind has done its work and the runner is recording "done" when the service stops: the
    stop waits for that record (a cut-off record left the job "running" until its lease ran out,
    to be taken and run again: seen in CI, a node stopped just after its export was ready).

    The record is held up for real: another transaction holds the job's row lock (the runner's
    fence check takes it FOR UPDATE) while the stop comes."""
    engine = make_engine(pg_url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    started, go = asyncio.Event(), asyncio.Event()

    async def work(ctx):
        started.set()
        await go.wait()

    runner = JobRunner({SESSIONS: sessions, HEALTH_NOTES: {}}, "local", ttl_s=30, beat_s=1, kinds={"w": work},
                       poll_s=0.1)
    try:
        async with transaction(sessions) as session:
            job_id = await jobs.enqueue(session, "w")
        await runner.start()
        await asyncio.wait_for(started.wait(), 10)
        async with sessions() as holder:
            await holder.execute(select(Job).where(Job.id == job_id).with_for_update())
            go.set()  # the work returns; its "done" waits for the row
            await asyncio.sleep(0.5)
            assert (await _job(sessions, job_id)).state == "running"
            stopping = asyncio.create_task(runner.stop())
            await asyncio.sleep(0.5)
            assert not stopping.done()  # waiting for the record, not gone without it
            await holder.rollback()  # the row is free: the record goes through
        await asyncio.wait_for(stopping, 10)
        job = await _job(sessions, job_id)
        assert (job.state, job.node_id, job.attempt) == ("done", "local", 1), (job.state, job.error)
    finally:
        await runner.stop()
        await engine.dispose()
