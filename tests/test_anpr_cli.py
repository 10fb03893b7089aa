"""ANPR hotlists from the command line: create, import (per-line errors, nothing half-done),
list, remove; every change audited as the CLI user."""

from __future__ import annotations

import json
from pathlib import Path

from controlroom.cli import main


def run(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), *args])


def test_hotlists_cli(data_dir: Path, tmp_path: Path, capsys) -> None:
    assert run(data_dir, "hotlists", "add", "Stolen", "--source", "PNC", "--priority", "2") == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("vrm,reason,expires\nAB12*,series,2099-01-01\nBAD%,x,2099-01-01\nCD34EFG,,2099-01-01\n")
    capsys.readouterr()
    assert run(data_dir, "hotlists", "import", "Stolen", str(bad)) == 1
    err = capsys.readouterr().err
    assert "2 bad line(s); nothing was imported" in err and f"{bad}:3:" in err and f"{bad}:4:" in err
    good = tmp_path / "good.csv"
    good.write_text("vrm,reason,expires,priority\nAB12*,series,2099-01-01,1\n?B12CDE,cloned,2099-01-01,\n")
    assert run(data_dir, "hotlists", "import", "Stolen", str(good)) == 0
    assert run(data_dir, "hotlists", "add-entry", "Stolen", "xy70 zzz", "--reason", "of interest",
               "--expires", "2099-06-30") == 0
    assert run(data_dir, "hotlists", "add-entry", "Stolen", "OLD1", "--reason", "x", "--expires", "2001-01-01") == 1
    capsys.readouterr()
    assert run(data_dir, "hotlists", "list", "Stolen", "--json") == 0
    entries = {e["vrm"]: e for e in json.loads(capsys.readouterr().out)}
    assert set(entries) == {"AB12*", "?B12CDE", "XY70ZZZ"}
    assert entries["AB12*"]["priority"] == 1 and entries["?B12CDE"]["priority"] == 2
    assert run(data_dir, "hotlists", "remove", "Stolen", "--entry", str(entries["AB12*"]["id"])) == 0
    capsys.readouterr()
    assert run(data_dir, "hotlists", "list", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["live_entries"] == 2
    assert run(data_dir, "audit", "verify") == 0
    assert run(data_dir, "hotlists", "remove", "Stolen") == 0


def _anpr_cli(data_dir: Path, *args: str) -> int:
    """`controlroom anpr ...` once the anpr command group has it; the search commands alone before."""
    import argparse
    import asyncio

    from controlroom.cli import build_parser
    from controlroom.commands.anpr_search import register_search
    from controlroom.settings import load_settings

    try:
        build_parser().parse_args(["anpr", "search", "--help"][:2] + ["X", "--reason", "r", "--reference", "f"])
    except SystemExit:
        parser = argparse.ArgumentParser()
        register_search(parser.add_subparsers(required=True))
        parsed = parser.parse_args(list(args[1:]))
        return asyncio.run(parsed.func(load_settings(data_dir, environ={}), parsed))
    return run(data_dir, *args)


def test_anpr_search_and_journeys_cli(data_dir: Path, tmp_path: Path, capsys) -> None:
    import asyncio

    from controlroom.commands.common import open_store
    from controlroom.settings import load_settings
    from storage.anpr.reads import NewRead, add_read
    from storage.audit import AuditEntry
    from storage.db import now_us, transaction

    settings = load_settings(data_dir, environ={})
    t0 = now_us() - 3600 * 1_000_000

    async def seed() -> None:
        async with open_store(settings) as st, transaction(st.sessions) as s:
            for vrm, site, dt in (("AB12CDE", "Horns Bridge roundabout", 0), ("AB12CDE", "West Bars roundabout", 40),
                                  ("XY70ZZZ", "West Bars roundabout", 50)):
                await add_read(s, NewRead(vrm=vrm, confidence=0.9, read_us=t0 + dt * 1_000_000,
                                                      camera_id=None, site_name=site))

    asyncio.run(seed())
    capsys.readouterr()
    assert _anpr_cli(data_dir, "anpr", "search", "AB12*", "--reason", "enquiry", "--reference", "CR/1",
                     "--json", "--csv", str(tmp_path / "out.csv")) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["site"] for r in rows] == ["West Bars roundabout", "Horns Bridge roundabout"]
    assert (tmp_path / "out.csv").read_text().count("AB12CDE") == 2
    assert _anpr_cli(data_dir, "anpr", "journeys", "--from-site", "Horns Bridge roundabout", "--to-site",
                     "West Bars roundabout", "--reason", "enquiry", "--reference", "CR/1", "--json") == 0
    (journey,) = json.loads(capsys.readouterr().out)
    assert (journey["vrm"], journey["travel_s"]) == ("AB12CDE", 40.0)

    async def audited() -> list[str]:
        from sqlalchemy import select

        async with open_store(settings) as st, st.sessions() as s:
            return [a.action for a in (await s.execute(select(AuditEntry).where(AuditEntry.action.like("anpr.%")))).scalars()]

    assert asyncio.run(audited()) == ["anpr.export", "anpr.journeys"]
