"""The keyed, anchored audit chain (issue 11): what someone with write access to the database
can no longer hide, on SQLite and PostgreSQL.

- a rewritten entry whose chain was recomputed with plain SHA-256 (all anyone without the key
  file can compute) is found, newer or older than the last anchor;
- a deleted anchor file, or one put back from an older copy, is reported;
- a database from before the keyed chain still verifies, its switch is in the trail, and
  moving the switch to pass a rewritten chain off as unkeyed disagrees with the anchor;
- the service anchors every interval, at shutdown (after the writer's last batch) and over
  MQTT (a real Mosquitto); a missing anchor file raises an alert; a failed final anchor is
  logged with the head it could not anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from pathlib import Path

import aiomqtt
import pytest
from alembic import command
from sqlalchemy import text

from controlroom.cli import main as cli
from controlroom.settings import SettingsError, load_settings
from storage import audit
from storage.db import make_engine, make_sessionmaker, transaction
from storage.keys import load_or_create_keys
from storage.migrate import alembic_config, upgrade


@pytest.fixture
def keys(data_dir: Path):
    return load_or_create_keys(data_dir / "secret.key")


def cli_on(db_url: str, data_dir: Path, monkeypatch):
    """``run(*argv)``: the CLI on ``data_dir`` and the test's database; its own SQL engine."""
    url = db_url if not db_url.startswith("sqlite") else f"sqlite+aiosqlite:///{data_dir / 'controlroom.db'}"
    monkeypatch.setenv("CONTROLROOM_DATABASE_URL", url)
    monkeypatch.delenv("CONTROLROOM_DATA_DIR", raising=False)
    pw = data_dir / "pw"
    pw.write_text("a long enough password\n")

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(cli, ["--data-dir", str(data_dir), *argv])

    async def add_users(*names: str) -> None:
        for name in names:
            assert await run("users", "add", name, "--role", "operator", "--password-file", str(pw)) == 0

    return run, add_users, make_engine(url)


async def rehash_from(engine, first_seq: int, change: tuple[int, str] | None = None) -> None:
    """What someone with the database but not the key file can do: change an entry's details,
    then recompute every hash from ``first_seq`` on with plain SHA-256, so every link holds."""
    async with engine.begin() as conn:
        rows = (await conn.execute(text(
            "SELECT seq, at_us, actor, action, target, details, prev_hash FROM audit WHERE seq >= :s ORDER BY seq"
        ), {"s": first_seq})).all()
        prev = rows[0].prev_hash
        for r in rows:
            details = change[1] if change and change[0] == r.seq else r.details
            h = audit.entry_hash(r.seq, r.at_us, r.actor, r.action, r.target, details, prev)
            await conn.execute(text("UPDATE audit SET details = :d, prev_hash = :p, hash = :h WHERE seq = :s"),
                               {"d": details, "p": prev, "h": h, "s": r.seq})
            prev = h


async def test_cli_finds_a_chain_recomputed_with_sha256(db_url, data_dir, monkeypatch, capsys):
    """Entry 7 (newer than the anchor at entry 5) rewritten and its chain recomputed: the old
    unkeyed chain verified that as intact. Then the whole chain from entry 1, entry 2 changed."""
    run, add_users, engine = cli_on(db_url, data_dir, monkeypatch)
    try:
        await add_users("alice", "bob", "carol", "dave", "erin")
        assert await run("audit", "digest") == 0  # the anchor (`digest` is the old name)
        await add_users("frank", "grace", "heidi")
        capsys.readouterr()
        assert await run("audit", "verify") == 0

        await rehash_from(engine, 7, change=(7, '{"role":"administrator"}'))
        assert await run("audit", "verify") == 1
        err = capsys.readouterr().err
        assert "first bad entry 7" in err and "entry 7 was altered" in err and "plain SHA-256" in err, err

        await rehash_from(engine, 1, change=(2, '{"role":"administrator"}'))
        assert await run("audit", "verify", "--json") == 1
        report = json.loads(capsys.readouterr().out)
        assert report["first_bad_seq"] == 1 and not report["ok"]
        assert "entry 1 was altered (its hash is a plain SHA-256" in report["problems"][0]
        assert any("entry 5 differs from the MAC anchor" in p for p in report["problems"]), report["problems"]
    finally:
        await engine.dispose()


async def test_cli_reports_a_deleted_or_older_anchor_file(db_url, data_dir, monkeypatch, capsys):
    run, add_users, engine = cli_on(db_url, data_dir, monkeypatch)
    await engine.dispose()
    await add_users("alice", "bob", "carol")
    capsys.readouterr()
    assert await run("audit", "digest") == 0
    path = Path(capsys.readouterr().out.split()[1])  # "wrote <path> ..."
    older = path.read_bytes()

    path.unlink()
    assert await run("audit", "verify") == 1
    err = capsys.readouterr().err
    assert "AUDIT TRAIL BROKEN" in err and f"anchor file {path} is missing" in err and "entry 3" in err, err

    assert await run("audit", "anchor") == 0  # anchoring again says what it found, and restores it
    assert f"anchor file {path} is missing" in capsys.readouterr().err
    assert await run("audit", "verify") == 0
    await add_users("dave")
    assert await run("audit", "anchor") == 0
    path.write_bytes(older)  # an older, genuinely signed copy put back to hide entry 4's anchor
    capsys.readouterr()
    assert await run("audit", "verify") == 1
    assert "replaced by an older copy" in capsys.readouterr().err
    # The anchor is outside the data directory: a copy or restore of that folder cannot carry it.
    assert not path.resolve().is_relative_to(data_dir.resolve())


async def test_a_database_from_before_the_keyed_chain(db_url, data_dir, keys, tmp_path):
    """Unkeyed entries from before migration 0008_audit_keyed_chain still verify; the switch is an entry of the
    trail; moving it to pass a recomputed chain off as unkeyed disagrees with the anchor."""
    engine = make_engine(db_url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def to_0008(conn) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007_segments_timeline_index")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to_0008)
            prev = audit.GENESIS
            for seq in range(1, 5):  # what the unkeyed code wrote
                row = {"seq": seq, "at_us": 1_700_000_000_000_000 + seq, "actor": "admin", "action": "user.add",
                       "target": f"user:u{seq}", "details": '{"role":"operator"}', "prev_hash": prev}
                row["hash"] = prev = audit.entry_hash(*row.values())
                await conn.execute(text("INSERT INTO audit (seq, at_us, actor, action, target, details, prev_hash, "
                                        "hash) VALUES (:seq, :at_us, :actor, :action, :target, :details, "
                                        ":prev_hash, :hash)"), row)
        await upgrade(engine)
        await upgrade(engine)  # idempotent: one switch only
        sessions = make_sessionmaker(engine, audit_key=keys.audit_mac_key)
        async with sessions() as session:
            marker = [e async for e in audit.entries(session)][-1]
            record = await audit.chain_record(session)
        assert (marker.seq, marker.actor, marker.action) == (5, "system", "audit.chain_keyed")
        assert json.loads(marker.details) == {"keyed_from_seq": 6, "rule": "HMAC-SHA-256"}
        assert record.keyed_from_seq == 6
        for i in range(3):
            async with transaction(sessions) as session:
                await audit.append(session, "admin", "user.add", f"user:k{i}", role="operator")
        await audit.write_anchor(sessions, keys, tmp_path / "anchor.json")

        async def check() -> audit.AuditReport:
            async with sessions() as session:
                return await audit.verify_all(session, keys, tmp_path / "anchor.json", tmp_path / "none")

        r = await check()
        assert r.ok and r.chain.entries == 8, r.problems
        async with sessions() as session:
            saved = (await session.execute(text("SELECT seq, action, details, prev_hash, hash FROM audit ORDER BY seq"))).all()

        async def restore() -> None:
            async with transaction(sessions) as session:
                for s in saved:
                    await session.execute(text("UPDATE audit SET action = :a, details = :d, prev_hash = :p, "
                                               "hash = :h WHERE seq = :s"),
                                          {"a": s.action, "d": s.details, "p": s.prev_hash, "h": s.hash, "s": s.seq})
                await session.execute(text("UPDATE audit_chain SET keyed_from_seq = 6"))
            assert (await check()).ok

        # An unkeyed entry rewritten, the chain recomputed with SHA-256: the first keyed entry fails.
        await rehash_from(engine, 1, change=(2, '{"role":"administrator"}'))
        r = await check()
        assert not r.ok and r.first_bad_seq == 6 and "entry 6 was altered (its hash is a plain SHA-256" in r.problems[0]
        await restore()

        # The switch moved past the head (the last entry made into a marker) and every entry
        # recomputed with SHA-256: the chain alone is consistent; the anchor is not fooled.
        async with transaction(sessions) as session:
            await session.execute(text("UPDATE audit SET action = 'audit.chain_keyed', details = :d WHERE seq = 8"),
                                  {"d": '{"keyed_from_seq":9}'})
            await session.execute(text("UPDATE audit_chain SET keyed_from_seq = 9"))
        await rehash_from(engine, 1)
        r = await check()
        assert r.chain.ok and not r.ok
        assert any("the boundary was moved" in p for p in r.problems) and r.first_bad_seq == 6, r.problems
        assert any("entry 8 differs from the MAC anchor" in p for p in r.problems), r.problems
        await restore()

        # The boundary record deleted: named, not passed over.
        async with transaction(sessions) as session:
            await session.execute(text("DELETE FROM audit_chain"))
        r = await check()
        assert not r.ok and "audit_chain record" in r.problems[0]
    finally:
        await engine.dispose()


async def test_anchor_loop_alerts_and_never_overwrites_the_evidence(sessions, keys, tmp_path):
    from controlroom.auditing import AnchorLoop

    path = tmp_path / "anchors" / "anchor.json"
    loop = AnchorLoop(sessions, keys, path, interval_s=300, session_idle_s=1800)

    async def fill(n: int) -> None:
        for i in range(n):
            async with transaction(sessions) as session:
                await audit.append(session, "op", "test.action", f"thing:{i}")

    async def alerts() -> list[tuple[str, str]]:
        async with sessions() as session:
            return [tuple(r) for r in (await session.execute(text("SELECT kind, message FROM alerts ORDER BY id")))]

    await fill(3)
    assert (await loop.run_once()).anchor.seq == 3
    assert (await loop.run_once()).written is False  # nothing new: the file is left alone
    path.unlink()
    await fill(1)
    result = await loop.run_once()
    assert result.written and result.anchor.seq == 4 and "is missing" in result.warning
    assert [k for k, _ in await alerts()] == ["audit.anchor_missing"]

    async with transaction(sessions) as session:
        await session.execute(text("DELETE FROM audit WHERE seq > 2"))
    await fill(3)  # a longer chain again, but not the one anchored
    kept = path.read_bytes()
    assert await loop.run_once() is None
    assert path.read_bytes() == kept
    kinds = await alerts()
    assert kinds[-1][0] == "audit.truncated" and "names entry 4" in kinds[-1][1], kinds


def test_anchor_file_setting(tmp_path):
    data = tmp_path / "site" / "data"
    s = load_settings(data, environ={})
    assert s.audit_anchor_file == (tmp_path / "site" / "data.audit-anchor.json").resolve()
    assert s.security.audit_anchor_interval_s <= 300
    elsewhere = tmp_path / "other-disk" / "anchor.json"
    s = load_settings(data, environ={"CONTROLROOM_SECURITY__AUDIT_ANCHOR_FILE": str(elsewhere)})
    assert s.audit_anchor_file == elsewhere
    with pytest.raises(SettingsError, match="must be outside data_dir"):
        load_settings(data, environ={"CONTROLROOM_SECURITY__AUDIT_ANCHOR_FILE": str(data / "anchor.json")})
    with pytest.raises(SettingsError, match="audit_anchor_interval_s"):
        load_settings(data, environ={"CONTROLROOM_SECURITY__AUDIT_ANCHOR_INTERVAL_S": "3600"})


async def test_service_anchors_each_interval_at_shutdown_and_over_mqtt(settings, keys, tmp_path, aiohttp_client):
    """The real app with the real bridge and Mosquitto: the anchor follows the head within the
    interval, the last one at shutdown names the writer's last entry, the MQTT copy is signed
    and catches a truncation after the file is gone."""
    from controlroom.app import create_app
    from controlroom.context import AUDIT
    from controlroom.mqtt import mqtt_ctx

    prefix = f"controlroom-test-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "anchors" / "anchor.json"
    s = settings.with_overrides(**{"security.audit_anchor_interval_s": 0.3, "security.audit_anchor_file": str(path),
                                   "mqtt.topic_prefix": prefix})
    app = create_app(s, record=False, anpr=False)
    app.cleanup_ctx.append(mqtt_ctx)
    received: list[audit.Anchor] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", 1883) as mq:
            await mq.subscribe(f"{prefix}/audit/anchor", qos=1)
            ready.set()
            async for message in mq.messages:
                if message.payload:
                    received.append(audit.parse_anchor(message.payload, "mqtt"))

    async def until(predicate, timeout_s: float = 10) -> None:
        for _ in range(int(timeout_s / 0.05)):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("timed out")

    def file_seq() -> int:
        a = audit.read_anchor(path)
        return a.seq if a else -1

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        client = await aiohttp_client(app)
        first = await app[AUDIT].append("op", "live.start", "camera:1")
        await until(lambda: file_seq() == first.seq)
        await until(lambda: any(a.seq == first.seq for a in received))
        last = await app[AUDIT].append("op", "live.stop", "camera:1")
        await client.close()  # shutdown: the writer writes, then the last anchor
        assert file_seq() == last.seq
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listener
        async with aiomqtt.Client("127.0.0.1", 1883) as mq:  # leave no retained message behind
            await mq.publish(f"{prefix}/audit/anchor", b"", qos=1, retain=True)

    copy = next(a for a in received if a.seq == first.seq)
    assert audit.signature_ok(copy.signed_bytes(), copy.signature, keys.public_key)
    saved = tmp_path / "mqtt-copy.json"
    saved.write_text(json.dumps(copy.to_json()))
    engine = make_engine(s.db_url)
    try:
        sessions = make_sessionmaker(engine, audit_key=keys.audit_mac_key)
        async with transaction(sessions) as session:
            await session.execute(text("DELETE FROM audit WHERE seq >= :s"), {"s": first.seq})
        path.unlink()  # and the file, as someone with both the database and the files would
        async with transaction(sessions) as session:  # ... and the database's record of it
            await session.execute(text("UPDATE audit_chain SET anchored_seq = 0, anchored_us = 0"))
        async with sessions() as session:
            r = await audit.verify_all(session, keys, path, s.audit_digest_dir, [saved])
        assert not r.ok and r.first_bad_seq == first.seq and "truncated" in r.problems[0], r.problems
    finally:
        await engine.dispose()


async def test_a_failed_final_anchor_is_logged_with_the_head(settings, tmp_path, aiohttp_client, caplog):
    from controlroom.app import create_app
    from controlroom.context import AUDIT

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    s = settings.with_overrides(**{"security.audit_anchor_file": str(blocker / "anchor.json")})
    app = create_app(s, record=False, anpr=False)
    client = await aiohttp_client(app)
    entry = await app[AUDIT].append("op", "live.start", "camera:1")
    with caplog.at_level(logging.ERROR, logger="controlroom.auditing"):
        await client.close()
    final = [r for r in caplog.records if "final anchor at shutdown failed" in r.getMessage()]
    assert final and f"head entry {entry.seq}" in final[0].getMessage() and final[0].exc_info


async def test_a_tail_cut_between_two_anchors_is_caught_by_the_running_service(sessions, keys, tmp_path):
    """Entries newer than the last anchor, deleted while the service runs: the writer knows the
    newest entry it committed, so the loop refuses to anchor the shorter chain and alerts, each
    interval, even after new entries have taken the deleted numbers."""
    from controlroom.auditing import AnchorLoop

    path = tmp_path / "anchor.json"
    writer = audit.AuditWriter(sessions)
    writer.start()
    try:
        loop = AnchorLoop(sessions, keys, path, interval_s=300, session_idle_s=1800, writer=lambda: writer)
        for i in range(3):
            await writer.append("op", "live.start", f"camera:{i}")
        assert (await loop.run_once()).anchor.seq == 3
        for i in range(2):
            await writer.append("op", "playback.start", f"camera:{i}")
        async with transaction(sessions) as session:
            await session.execute(text("DELETE FROM audit WHERE seq > 3"))
        assert await loop.run_once() is None
        await writer.append("op", "live.stop", "camera:9")  # takes number 4 again
        assert await loop.run_once() is None
    finally:
        await writer.close()
    assert audit.read_anchor(path).seq == 3
    async with sessions() as session:
        alerts = (await session.execute(text("SELECT kind, message FROM alerts ORDER BY id"))).all()
    assert [a.kind for a in alerts] == ["audit.truncated", "audit.truncated"]
    assert "entry 5 (playback.start by op), committed by this process, is gone" in alerts[0].message


async def test_api_verify_reports_the_anchor(settings, aiohttp_client, login):
    """GET /api/v1/audit/verify checks the anchor file (written at start-up) too."""
    from controlroom.app import create_app

    app = create_app(settings, record=False, anpr=False)
    client = await aiohttp_client(app)
    path = settings.audit_anchor_file
    for _ in range(200):
        if path.exists():
            break
        await asyncio.sleep(0.05)
    assert audit.read_anchor(path).seq <= 1  # the start-up anchor (the first administrator may be in it)
    headers = await login(client, "supervisor")
    body = await (await client.get("/api/v1/audit/verify", headers=headers)).json()
    assert body["ok"] and body["anchors_checked"] == 1, body
    path.unlink()
    body = await (await client.get("/api/v1/audit/verify", headers=headers)).json()
    assert not body["ok"] and f"anchor file {path} is missing" in body["problems"][0], body


async def test_a_deleted_anchor_of_the_empty_chain_is_reported(sessions, keys, tmp_path):
    path = tmp_path / "anchor.json"
    assert (await audit.write_anchor(sessions, keys, path)).anchor.seq == 0
    path.unlink()
    async with sessions() as session:
        r = await audit.verify_all(session, keys, path, tmp_path / "none")
    assert not r.ok and "is missing" in r.problems[0]


async def test_the_anchor_lock_is_bounded_and_cancellable(sessions, keys, tmp_path, monkeypatch):
    """Another process holding the anchor's lock (a CLI stuck mid-anchor): the wait gives up
    with an error instead of hanging the service's stop, and a cancelled wait leaves no lock
    behind."""
    import fcntl
    import os

    path = tmp_path / "anchor.json"
    monkeypatch.setattr(audit, "ANCHOR_LOCK_TIMEOUT_S", 0.3)
    other = os.open(tmp_path / "anchor.json.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(TimeoutError, match="held by another process"):
            await audit.write_anchor(sessions, keys, path)
        waiting = asyncio.create_task(audit.write_anchor(sessions, keys, path))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        os.close(other)
    assert (await asyncio.wait_for(audit.write_anchor(sessions, keys, path), 2)).written


async def test_an_anchor_that_cannot_be_written_is_alerted_once(sessions, keys, tmp_path, caplog):
    from controlroom.auditing import AnchorLoop

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    loop = AnchorLoop(sessions, keys, blocker / "anchor.json", interval_s=300, session_idle_s=1800)
    with caplog.at_level(logging.ERROR, logger="controlroom.auditing"):
        await loop.tick()
        await loop.tick()
    assert sum("anchoring the chain head" in r.getMessage() for r in caplog.records) == 2
    async with sessions() as session:
        kinds = (await session.execute(text("SELECT kind, message FROM alerts"))).all()
    assert [k.kind for k in kinds] == ["audit.anchor_failed"] and "unprotected" in kinds[0].message


@pytest.mark.postgres
async def test_in_a_cluster_one_node_anchors_and_the_next_takes_over_when_it_dies(pg_url, keys, tmp_path):
    """Two nodes on one PostgreSQL and one shared anchor file: only the holder of the anchor
    lock writes it (two writers would each overwrite the other's anchor); when the holder's
    connection dies (its node killed), the other node anchors at its next interval."""
    from controlroom.auditing import AnchorLeader, AnchorLoop

    engines = [make_engine(pg_url) for _ in range(2)]
    await upgrade(engines[0])
    pools = [make_sessionmaker(e, audit_key=keys.audit_mac_key) for e in engines]
    path = tmp_path / "shared" / "anchor.json"
    leaders = [AnchorLeader(e) for e in engines]
    loops = [AnchorLoop(p, keys, path, interval_s=300, session_idle_s=1800, leader=leader)
             for p, leader in zip(pools, leaders, strict=True)]
    try:
        async with transaction(pools[0]) as session:
            await audit.append(session, "op", "test.action", "thing:1")
        first = await loops[0].run_once()
        assert first is not None and first.anchor.seq == 1
        assert await loops[1].run_once() is None  # node 0 anchors; node 1 leaves the file alone
        async with transaction(pools[1]) as session:
            await audit.append(session, "op", "test.action", "thing:2")
        assert (await loops[0].run_once()).anchor.seq == 2  # the holder anchors every node's entries
        assert await loops[1].run_once() is None
        # Node 0 dies: its connection, and with it the lock, goes.
        await engines[0].dispose()
        await leaders[0].conn.invalidate()
        result = await loops[1].run_once()
        assert result is not None and result.anchor.seq == 2 and not result.warning
        assert json.loads(path.read_text())["seq"] == 2
    finally:
        for leader in leaders:
            await leader.close()
        for e in engines:
            await e.dispose()
