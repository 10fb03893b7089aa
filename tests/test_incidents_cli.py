"""The occurrence book from the command line: open, note, update, close, refuse a change after
closing, take a correction, list, show; bookmarks add and list; all audited as the CLI user."""

from __future__ import annotations

import json
from pathlib import Path

from controlroom.cli import main


def run(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), *args])


def test_incidents_and_bookmarks_cli(data_dir: Path, capsys) -> None:
    assert run(data_dir, "cameras", "add", "Market Cross", "--site", "Town Centre") == 0
    assert run(data_dir, "incidents", "open", "violence", "--camera", "Market Cross", "--told", "police",
               "--told", "ambulance", "--at", "2026-11-28T23:40:00+00:00", "--summary", "Fight at taxi rank") == 0
    assert run(data_dir, "incidents", "note", "1", "Police on scene 23:46") == 0
    assert run(data_dir, "incidents", "close", "1") == 1  # no outcome yet
    assert "outcome" in capsys.readouterr().err
    assert run(data_dir, "incidents", "update", "1", "--police-reference", "CAD 7781") == 0
    assert run(data_dir, "incidents", "close", "1", "--outcome", "arrest_assisted") == 0
    assert run(data_dir, "incidents", "update", "1", "--summary", "rewritten") == 1
    assert "closed" in capsys.readouterr().err
    assert run(data_dir, "incidents", "note", "1", "--correction", "Two arrests, not one") == 0
    assert run(data_dir, "bookmarks", "add", "Market Cross", "2026-11-28T23:41:00+00:00", "--note", "first punch",
               "--incident", "1") == 0
    capsys.readouterr()

    assert run(data_dir, "incidents", "show", "1", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["camera"], shown["site"], shown["police_reference"]) == (
        "closed", "Market Cross", "Town Centre", "CAD 7781")
    assert shown["told"] == ["police", "ambulance"] and shown["occurred_at_local"] == "2026-11-28T23:40:00.000+00:00"
    assert [e["kind"] for e in shown["entries"]] == ["status", "note", "status", "status", "correction", "link"]
    assert [b["note"] for b in shown["bookmarks"]] == ["first punch"]
    assert run(data_dir, "incidents", "list", "--status", "closed", "--category", "violence", "--json") == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [1]
    assert run(data_dir, "incidents", "list", "--status", "open", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert run(data_dir, "bookmarks", "list", "--search", "PUNCH") == 0
    assert "first punch" in capsys.readouterr().out
    assert run(data_dir, "incidents", "show", "99") == 1
    assert "no incident 99" in capsys.readouterr().err
    assert run(data_dir, "audit", "verify") == 0
    capsys.readouterr()
    assert run(data_dir, "audit", "export") == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    mine = [(e["actor"].startswith("cli:"), e["action"]) for e in entries
            if e["action"].startswith(("incident.", "bookmark."))]
    assert mine == [(True, a) for a in ("incident.open", "incident.note", "incident.update", "incident.close",
                                        "incident.correction", "bookmark.create")]
