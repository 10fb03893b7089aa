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
