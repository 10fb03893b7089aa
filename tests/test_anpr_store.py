"""ANPR storage on SQLite and PostgreSQL: reads, wildcard searches, hotlists, hits, journeys,
retention. Reads are inserted directly here; live reading has its own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anpr.hotlist import HotlistImportError, check_read, import_csv, matches, parse_expiry
from anpr.journeys import find_journeys, pair_journeys
from storage import Invalid, NotFound
from storage.anpr.hits import add_hit, decide_hit, get_hit, list_hits
from storage.anpr.hotlists import (
    EntrySpec,
    add_entries,
    add_hotlist,
    list_entries,
    remove_entry,
    remove_hotlist,
    update_hotlist,
)
from storage.anpr.images import resolve_image, save_read_images, write_image
from storage.anpr.models import AnprRead, HitState
from storage.anpr.reads import NewRead, ReadQuery, add_read, get_read, search_reads
from storage.anpr.retention import run_anpr_retention
from storage.audit import verify_chain
from storage.db import now_us, transaction
from storage.inventory import CameraSpec, add_camera
from storage.keys import load_or_create_keys

S = 1_000_000
DAY = 86_400 * S


async def _cameras(sessions, tmp_path: Path) -> dict[str, int]:
    keys = load_or_create_keys(tmp_path / "k.key")
    async with transaction(sessions) as s:
        hb = await add_camera(s, CameraSpec(name="HB1", site="Horns Bridge roundabout", kind="anpr", lane="1",
                                            direction="northbound", recording=False), keys)
        wb = await add_camera(s, CameraSpec(name="WB1", site="West Bars roundabout", kind="anpr", lane="2",
                                            direction="eastbound", recording=False), keys)
    return {"hb": hb.id, "wb": wb.id}


async def _read(sessions, vrm: str, camera_id: int, at_us: int, **kw) -> AnprRead:
    async with transaction(sessions) as s:
        return await add_read(s, NewRead(vrm=vrm, confidence=0.9, read_us=at_us, camera_id=camera_id, **kw))


async def test_read_takes_site_lane_direction_from_camera(sessions, tmp_path):
    cams = await _cameras(sessions, tmp_path)
    r = await _read(sessions, "ab12 cde", cams["hb"], now_us())
    assert (r.vrm, r.site_name, r.lane, r.direction) == ("AB12CDE", "Horns Bridge roundabout", "1", "northbound")


async def test_wildcard_search_time_range_and_site(sessions, tmp_path):
    cams = await _cameras(sessions, tmp_path)
    t0 = now_us() - 3600 * S
    await _read(sessions, "AB12CDE", cams["hb"], t0)
    await _read(sessions, "AB12CDF", cams["wb"], t0 + 10 * S)
    await _read(sessions, "XB12CDE", cams["wb"], t0 + 20 * S)
    await _read(sessions, "ZZ99ZZZ", cams["hb"], t0 + 30 * S)
    async with sessions() as s:
        def vrms(rows):
            return sorted(r.vrm for r in rows)
        assert vrms(await search_reads(s, ReadQuery("AB12*"))) == ["AB12CDE", "AB12CDF"]
        assert vrms(await search_reads(s, ReadQuery("?B12CDE"))) == ["AB12CDE", "XB12CDE"]
        assert vrms(await search_reads(s, ReadQuery("ab12 cde"))) == ["AB12CDE"]
        assert vrms(await search_reads(s, ReadQuery("*", sites=("west bars roundabout",)))) == [
            "AB12CDF", "XB12CDE"]
        assert vrms(await search_reads(s, ReadQuery("*", from_us=t0 + 5 * S, to_us=t0 + 25 * S))) == [
            "AB12CDF", "XB12CDE"]
        # A search result never includes the % and _ of SQL: they are not pattern characters here.
        with pytest.raises(Invalid):
            await search_reads(s, ReadQuery("AB%"))
        with pytest.raises(Invalid):
            await search_reads(s, ReadQuery("*", from_us=t0, to_us=t0 - 1))


@given(st.from_regex(r"[A-Z0-9]{2,8}", fullmatch=True), st.data())
def test_pattern_matching_agrees_with_its_definition(vrm, data):
    # Build a pattern from the VRM by replacing characters with ? and runs with *.
    chars = list(vrm)
    i = data.draw(st.integers(0, len(chars) - 1))
    chars[i] = "?"
    assert matches("".join(chars), vrm)
    j = data.draw(st.integers(0, len(vrm)))
    assert matches(vrm[:j] + "*", vrm)
    assert matches("*" + vrm[j:], vrm)
    assert not matches(vrm + "?", vrm)
    other = "".join("A" if c != "A" else "B" for c in vrm)
    assert not matches(vrm, other)


async def test_hotlist_match_wildcards_and_expiry(sessions):
    now = now_us()
    async with transaction(sessions) as s:
        hl = await add_hotlist(s, "Stolen", source="PNC", created_by="t")
        await add_entries(s, hl.id, [
            EntrySpec("AB12*", "stolen series", "PNC", 2, now + DAY),
            EntrySpec("?B12CDE", "cloned", "PNC", 1, now + DAY),
            EntrySpec("EX01PRD", "expires soon", "PNC", 3, now + 2 * S),
        ])
    async with sessions() as s:
        hits = await check_read(s, "AB12 CDE", now)
        assert [e.pattern for e, _ in hits] == ["?B12CDE", "AB12*"]  # most urgent first
        assert [e.pattern for e, _ in await check_read(s, "EX01PRD", now)] == ["EX01PRD"]
        # Expired: never matches, whatever the caller hands over.
        assert await check_read(s, "EX01PRD", now + 3 * S) == []
        assert await check_read(s, "ZZ99ZZZ", now) == []
    async with transaction(sessions) as s:
        with pytest.raises(Invalid, match="past"):
            await add_entries(s, hl.id, [EntrySpec("OLD1", "x", "y", 3, now - S)])
        with pytest.raises(Invalid, match="every vehicle"):
            await add_entries(s, hl.id, [EntrySpec("*", "x", "y", 3, now + DAY)])


async def test_disabled_hotlist_and_removed_entry_do_not_match(sessions):
    now = now_us()
    async with transaction(sessions) as s:
        hl = await add_hotlist(s, "Interest", source="local")
        (entry,) = await add_entries(s, hl.id, [EntrySpec("AB12CDE", "r", "s", 3, now + DAY)])
    async with transaction(sessions) as s:
        await update_hotlist(s, hl.id, enabled=False)
    async with sessions() as s:
        assert await check_read(s, "AB12CDE", now) == []
    async with transaction(sessions) as s:
        await update_hotlist(s, hl.id, enabled=True)
        await remove_entry(s, hl.id, entry.id, "tester")
    async with sessions() as s:
        assert await check_read(s, "AB12CDE", now) == []


async def test_csv_import_reports_each_bad_line_and_imports_nothing(sessions):
    async with transaction(sessions) as s:
        hl = await add_hotlist(s, "Imported", source="Force intel", default_priority=4)
    bad = (
        "vrm,reason,priority,expires\n"
        "AB12CDE,stolen,1,2099-01-01\n"
        "A%12,bad pattern,2,2099-01-01\n"
        ",no vrm,2,2099-01-01\n"
        "CD34EFG,,2,2099-01-01\n"
        "EF56GHI,late,9,2099-01-01\n"
        "GH78IJK,old,2,2001-01-01\n"
        "IJ90KLM,naive time,2,2099-01-01T10:00\n"
        "AB12CDE,duplicate,1,2099-01-01\n"
        "KL12MNO,too,many,fields,here\n"
    )
    async with transaction(sessions) as s:
        with pytest.raises(HotlistImportError) as err:
            await import_csv(s, hl, bad, "tester")
    lines = dict(err.value.errors)
    assert set(lines) == {3, 4, 5, 6, 7, 8, 9, 10}
    assert "not a registration" in lines[3] and "vrm is required" in lines[4] and "reason" in lines[5]
    assert "priority" in lines[6] and "past" in lines[7] and "offset" in lines[8]
    assert "repeats line 2" in lines[9] and "fields" in lines[10]
    async with sessions() as s:
        assert await list_entries(s, hl.id) == []
    good = "VRM,Reason,Expires,Source\nab12 cde,stolen,2099-01-01,\n?B12*,series,2099-01-01T00:00:00Z,ANPR unit\n"
    async with transaction(sessions) as s:
        result = await import_csv(s, hl, good, "tester")
    assert result.added == 2
    async with sessions() as s:
        entries = {e.pattern: e for e in await list_entries(s, hl.id)}
    assert set(entries) == {"AB12CDE", "?B12*"}
    assert entries["AB12CDE"].source == "Force intel" and entries["AB12CDE"].priority == 4
    assert entries["?B12*"].is_pattern and entries["?B12*"].source == "ANPR unit"
    with pytest.raises(HotlistImportError, match="missing column"):
        store_hl = hl
        from anpr.hotlist import parse_csv
        parse_csv("vrm,reason\nAB1,x\n", store_hl)


def test_expiry_dates_are_end_of_london_day():
    # 1 July is in BST: the end of the day in London is 23:00 UTC.
    assert parse_expiry("2027-07-01") == parse_expiry("2027-07-01T23:00:00Z")
    assert parse_expiry("2027-01-01") == parse_expiry("2027-01-02T00:00:00Z")


async def test_hits_confirm_dismiss_recorded(sessions, tmp_path):
    cams = await _cameras(sessions, tmp_path)
    now = now_us()
    async with transaction(sessions) as s:
        hl = await add_hotlist(s, "H", source="PNC")
        (entry,) = await add_entries(s, hl.id, [EntrySpec("AB12CDE", "stolen", "PNC", 1, now + DAY)])
    read = await _read(sessions, "AB12CDE", cams["hb"], now)
    async with transaction(sessions) as s:
        hit = await add_hit(s, read, entry)
    async with transaction(sessions) as s:
        await decide_hit(s, hit.id, HitState.CONFIRMED, "op1", "matches the images")
    async with transaction(sessions) as s:
        with pytest.raises(Invalid, match="already confirmed by op1"):
            await decide_hit(s, hit.id, HitState.DISMISSED, "op2")
    async with sessions() as s:
        rows = await list_hits(s, state="confirmed")
        assert [(h.id, h.decided_by, h.note) for h, *_ in rows] == [(hit.id, "op1", "matches the images")]
        with pytest.raises(NotFound):
            await get_hit(s, 999)
        with pytest.raises(Invalid):
            await remove_hotlist(s, hl.id)


async def test_journeys_both_sites_within_window(sessions, tmp_path):
    cams = await _cameras(sessions, tmp_path)
    t0 = now_us() - 7200 * S
    await _read(sessions, "AA11AAA", cams["hb"], t0)
    await _read(sessions, "AA11AAA", cams["wb"], t0 + 312 * S + 500_000)  # 312.5 s later
    await _read(sessions, "BB22BBB", cams["wb"], t0 + 60 * S)
    await _read(sessions, "BB22BBB", cams["hb"], t0 + 400 * S)  # the other way
    await _read(sessions, "CC33CCC", cams["hb"], t0)
    await _read(sessions, "CC33CCC", cams["wb"], t0 + 1800 * S)  # too slow for 15 minutes
    await _read(sessions, "DD44DDD", cams["hb"], t0)  # one site only
    async with sessions() as s:
        one_way = await find_journeys(s, "Horns Bridge roundabout", "West Bars roundabout", 900)
        both = await find_journeys(s, "horns bridge roundabout", "west bars roundabout", 900, either_direction=True)
        later = await find_journeys(s, "Horns Bridge roundabout", "West Bars roundabout", 900, from_us=t0 + S)
    assert [(j.vrm, j.travel_s) for j in one_way] == [("AA11AAA", 312.5)]
    assert sorted((j.vrm, j.from_site[:4], j.travel_s) for j in both) == [
        ("AA11AAA", "Horn", 312.5), ("BB22BBB", "West", 340.0)]
    assert later == []


def test_pair_journeys_latest_origin_read_counts():
    from types import SimpleNamespace as R
    reads = [R(id=1, vrm="X1", read_us=0, site_name="A"), R(id=2, vrm="X1", read_us=100 * S, site_name="A"),
             R(id=3, vrm="X1", read_us=130 * S, site_name="B"), R(id=4, vrm="X1", read_us=140 * S, site_name="B")]
    (j,) = pair_journeys(reads, "A", "B", 900 * S)
    assert (j.from_read_id, j.to_read_id, j.travel_s) == (2, 3, 30.0)
    with pytest.raises(Invalid):
        pair_journeys(reads, "A", "a", 900 * S)


async def test_retention_deletes_old_reads_and_files_keeps_pending_hits(sessions, tmp_path):
    cams = await _cameras(sessions, tmp_path)
    root = tmp_path / "anpr"
    now = now_us()
    old = now - 40 * DAY
    rels = save_read_images(root, old, cams["hb"], b"\xff\xd8plate", b"\xff\xd8overview")
    old_read = await _read(sessions, "OL01DDD", cams["hb"], old, plate_path=rels[0], overview_path=rels[1])
    pend_rels = save_read_images(root, old + S, cams["hb"], b"\xff\xd8p", b"\xff\xd8o")
    pending_read = await _read(sessions, "PE01DDD", cams["hb"], old + S, plate_path=pend_rels[0],
                               overview_path=pend_rels[1])
    new_read = await _read(sessions, "NE01WWW", cams["wb"], now)
    orphan = root / "2001/01/01/1"
    orphan.mkdir(parents=True)
    (orphan / "lost.jpg").write_bytes(b"x")
    async with transaction(sessions) as s:
        hl = await add_hotlist(s, "R", source="x")
        (entry,) = await add_entries(s, hl.id, [EntrySpec("PE01DDD", "r", "s", 3, now + DAY)])
        await add_hit(s, pending_read, entry)
    result = await run_anpr_retention(sessions, root, retention_days=31, now=now)
    assert (result.reads, result.files, result.kept_pending) == (1, 2, 1)
    assert not (root / rels[0]).exists() and (root / pend_rels[0]).exists()
    assert not orphan.exists()
    async with sessions() as s:
        with pytest.raises(NotFound):
            await get_read(s, old_read.id)
        await get_read(s, pending_read.id)
        await get_read(s, new_read.id)
        assert (await verify_chain(s)).ok


def test_resolve_image_never_leaves_root(tmp_path):
    root = tmp_path / "anpr"
    rel = write_image(root, "2026/01/01/1", "a.jpg", b"jpeg")
    assert resolve_image(root, rel) == (root / rel).resolve()
    (tmp_path / "secret.key").write_text("no")
    os.symlink(tmp_path / "secret.key", root / "2026/01/01/1/link.jpg")
    for bad in ("../secret.key", "/etc/passwd", "2026/01/01/1/link.jpg", "", "2026/01/01/1/missing.jpg"):
        with pytest.raises(NotFound):
            resolve_image(root, bad)
