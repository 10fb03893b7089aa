"""A recorder node cut off from PostgreSQL stops recording nothing (issue 16), as real processes.

Two ``controlroom serve`` nodes share one PostgreSQL and one storage folder; node-a reaches the
database through a TCP proxy on loopback that the test owns. node-a records the one simulated
camera; the test cuts every connection of the proxy and refuses new ones for 30 s. node-a keeps
writing; its lease runs out and node-b takes the camera. When the proxy is back, node-a's queue
is written: what it recorded before node-b's claim must be catalogued (late), what overlaps
node-b's footage kept in ``fenced/``, no two segments overlapping, the gap rows truthful, and
node-a must say so (``/healthz``, an alert, its log). Skipped without PostgreSQL on loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from tcp_proxy import CuttableProxy
from test_cluster import SEGMENT_S, Node, pg_available, stop_nodes, until  # noqa: F401 - the fixture
from test_recording import add_cameras

from simulator import Simulation
from storage.alerts import Alert
from storage.catalogue import incoming_named_us
from storage.db import make_engine, make_sessionmaker, now_us
from storage.models import Camera, Gap, Segment
from storage.nodes import CameraLease, NodeRow

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
CUT_S = 30.0
S = 1_000_000


async def test_a_node_cut_off_from_the_database_catalogues_its_footage_from_before_the_takeover(
    pg_available, pg_url: str, tmp_path: Path, unused_tcp_port_factory  # noqa: F811
) -> None:
    store = tmp_path / "shared-store"
    store.mkdir()
    target = urlsplit(pg_url.replace("postgresql+asyncpg", "postgresql"))
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxy_port = await proxy.start()
    a = Node(tmp_path, "node-a", pg_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy_port}"),
             store, unused_tcp_port_factory(), None)
    engine = make_engine(pg_url)  # the test's own look at the database, never through the proxy
    sessions = make_sessionmaker(engine)
    async with Simulation(tmp_path / "sim", cameras=1) as sim:
        cam_spec = sim.cameras[0]
        ids = await add_cameras(a.settings, [dict(name=cam_spec.name, main_url=cam_spec.main_url,
                                                  username=cam_spec.username, password=cam_spec.password)])
        cam = ids[cam_spec.name]
        b = Node(tmp_path, "node-b", pg_url, store, unused_tcp_port_factory(), a.settings.key_file)

        async def holder() -> str | None:
            async with sessions() as s:
                return await s.scalar(select(CameraLease.node_id).where(CameraLease.camera_id == cam,
                                                                         CameraLease.role == "recorder"))

        async def segments_after(after_us: int) -> int:
            async with sessions() as s:
                rows = (await s.execute(select(Segment.id).where(Segment.camera_id == cam,
                                                                 Segment.start_us > after_us))).all()
            return len(rows)

        async def alerts(kind: str) -> list[Alert]:
            async with sessions() as s:
                return list((await s.scalars(select(Alert).where(Alert.kind == kind))).all())

        try:
            a.start()
            await until("node-a records the camera", lambda: _is(holder(), "node-a"), 60)
            await until("node-a catalogues segments", lambda: _at_least(segments_after(0), 3), 60)
            b.start()

            async def b_running() -> bool:
                async with sessions() as s:
                    return await s.get(NodeRow, "node-b") is not None

            await until("node-b runs", b_running, 60)
            await asyncio.sleep(SEGMENT_S / 2)  # mid-segment
            proxy.cut()
            cut_us = now_us()
            # node-b takes the camera once node-a's lease has run out (15 s) and at its next
            # heartbeat: bracket its claim between two looks.
            claim_lo = cut_us
            while (await holder()) != "node-b":
                assert now_us() - cut_us < CUT_S * S, "node-b did not take the camera during the cut"
                claim_lo = now_us()
                await asyncio.sleep(0.25)
            claim_hi = now_us()
            status, body = await asyncio.to_thread(a.healthz)  # node-a, cut off, says so meanwhile
            assert status == 503, body
            await asyncio.sleep(max(0.0, CUT_S - (now_us() - cut_us) / S))
            proxy.restore()
            restored_us = now_us()

            # node-a is back: it finds the camera gone, stops its recorder and writes its queue.
            async def a_let_go() -> bool:
                status, body = await asyncio.to_thread(a.healthz)
                return body.get("node", {}).get("cameras") == [] and bool(
                    await alerts("segment_fenced") or await alerts("segments_catalogued_late"))

            await until("node-a lets the camera go and writes its queue", a_let_go, 60)
            await until("node-b records after the cut", lambda: _at_least(segments_after(restored_us), 2), 60)
            await asyncio.sleep(12)  # node-a's drain (10 s at most) and its alerts
            _, a_body = await asyncio.to_thread(a.healthz)
            async with sessions() as s:
                camera = await s.get(Camera, cam)
        finally:
            await asyncio.to_thread(stop_nodes, a, b)
            await proxy.close()

    async with sessions() as s:
        rows = (await s.execute(select(Segment.start_us, Segment.end_us, Segment.path, Segment.state)
                                .where(Segment.camera_id == cam).order_by(Segment.start_us))).all()
        gaps = (await s.execute(select(Gap.start_us, Gap.end_us, Gap.reason).where(Gap.camera_id == cam)
                                .order_by(Gap.start_us))).all()
        late_alerts = [a.to_dict() for a in (await s.scalars(select(Alert).where(
            Alert.kind == "segments_catalogued_late"))).all()]
    await engine.dispose()
    fenced = sorted((store / str(cam) / "fenced").glob("*")) if (store / str(cam) / "fenced").is_dir() else []
    print(f"\ncut {CUT_S:.0f} s; node-b's claim {(claim_lo - cut_us) / S:.1f}-{(claim_hi - cut_us) / S:.1f} s after the "
          f"cut; {len(rows)} segments catalogued, {len(fenced)} fenced; node-a's late count "
          f"{a_body.get('node', {}).get('segments_catalogued_late')}; gaps "
          + ", ".join(f"[{(g.start_us - cut_us) / S:+.1f}, {((g.end_us or now_us()) - cut_us) / S:+.1f}] s {g.reason!r}"
                      for g in gaps if (g.end_us or now_us()) > cut_us - 10 * S))

    # The footage recorded during the cut before node-b's claim is catalogued: no hole over a
    # second in [cut, claim - one segment] (the segment being written at the claim may overlap
    # node-b's first footage: it is fenced).
    before = [r for r in rows if r.end_us > cut_us - SEGMENT_S * S and r.start_us < claim_lo]
    covered_to = cut_us - SEGMENT_S * S
    for r in before:
        assert r.start_us <= covered_to + S, (f"hole of {(r.start_us - covered_to) / S:.1f} s at "
                                              f"{(covered_to - cut_us) / S:+.1f} s after the cut", rows)
        covered_to = max(covered_to, r.end_us)
    assert covered_to >= claim_lo - (SEGMENT_S + 1) * S, (
        f"footage from before node-b's claim not catalogued: covered to {(covered_to - cut_us) / S:+.1f} s, claim "
        f"at {(claim_lo - cut_us) / S:+.1f} s after the cut; fenced: {[p.name for p in fenced]}")
    # No two segments overlap (over a second: recovered files are stamped by their mtime), no
    # file twice.
    for prev, nxt in zip(rows, rows[1:], strict=False):
        assert nxt.start_us >= prev.end_us - S, (prev, nxt)
    assert len({r.path for r in rows}) == len(rows)
    # What overlapped node-b's footage is in fenced/, and only that: nothing begun well before
    # the claim.
    assert fenced, "node-a's footage after node-b's claim should be fenced"
    for path in fenced:
        started = incoming_named_us(path)
        assert started is not None and started >= claim_lo - (SEGMENT_S + 1) * S, (path.name, claim_lo)
    # The gaps are truthful: none overlaps a catalogued segment, and what is left of the takeover
    # gap begins no earlier than the footage catalogued late (slivers of under a second between
    # segments stamped by two nodes are real holes).
    for g in gaps:
        end = g.end_us if g.end_us is not None else now_us()
        assert not any(r.start_us < end and r.end_us > g.start_us for r in rows), (g, rows)
        if end > cut_us and g.start_us < covered_to - S:  # inside the footage catalogued late: slivers only
            assert end - g.start_us <= S, (g, covered_to)
    assert any(g.reason == "camera taken over by node node-b" for g in gaps), gaps
    # Said: /healthz's count, one alert per recorder with the same count, the log; and the
    # camera's state is node-b's, not what node-a saw while cut off.
    late = a_body["node"]["segments_catalogued_late"]
    assert late >= 1, a_body
    assert len(late_alerts) == 1 and late_alerts[0]["data"]["segments"] == late, late_alerts
    assert late_alerts[0]["data"]["taken_by"] == "node-b" and late_alerts[0]["data"]["generation"] == 1
    assert "catalogued late" in (a.data_dir / "serve.log").read_text()
    assert camera.state in ("recording", "starting"), (camera.state, camera.state_reason)


async def _is(pending, value) -> bool:
    return (await pending) == value


async def _at_least(pending, n: int) -> bool:
    return (await pending) >= n

