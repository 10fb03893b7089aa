"""``controlroom duty|rota|faults|health`` on a data directory (SQLite), audited as cli:<user>."""

from __future__ import annotations

import asyncio
import json

import cv2
import numpy as np
from sqlalchemy import select

from controlroom.cli import main as cli
from controlroom.commands.common import open_store
from storage import accounts
from storage.audit import AuditEntry
from storage.db import transaction
from storage.inventory import CameraSpec, add_camera


def run(data_dir, *argv: str) -> int:
    return cli(["--data-dir", str(data_dir), *argv])


async def _seed(settings) -> None:
    async with open_store(settings) as st, transaction(st.sessions) as session:
        await add_camera(session, CameraSpec(name="Market Street", main_url="rtsp://127.0.0.1:1/m"), st.keys)
        await accounts.create_user(session, "olive", "operator", "x")
        await accounts.create_user(session, "andy", "administrator", "x")


async def _actions(settings) -> list[tuple[str, str]]:
    async with open_store(settings) as st, st.sessions() as session:
        rows = await session.execute(select(AuditEntry.actor, AuditEntry.action).order_by(AuditEntry.seq))
        return [(a, b) for a, b in rows if b.split(".")[0] in ("duty", "rota", "fault")]


def test_duty_rota_faults_and_availability_from_the_cli(settings, data_dir, capsys, monkeypatch):
    monkeypatch.delenv("CONTROLROOM_DATABASE_URL", raising=False)
    asyncio.run(_seed(settings))
    assert run(data_dir, "duty", "on", "olive", "--note", "earlies") == 0
    assert run(data_dir, "duty", "on", "olive") == 1  # already on duty
    assert run(data_dir, "duty", "on", "andy") == 1  # administrators do not watch
    assert run(data_dir, "duty", "on", "nobody") == 1
    capsys.readouterr()
    assert run(data_dir, "duty", "status", "--json") == 0
    (on,) = json.loads(capsys.readouterr().out)
    assert on["user"] == "olive" and on["note"] == "earlies"
    assert run(data_dir, "duty", "off", "olive") == 0
    assert run(data_dir, "duty", "status") == 0
    assert "nobody is on duty" in capsys.readouterr().out

    assert run(data_dir, "rota", "add", "--day", "mon", "--from", "08:00", "--to", "16:00", "--operators", "2") == 0
    assert run(data_dir, "rota", "add", "--day", "mon", "--from", "16:00", "--to", "08:00") == 1
    assert run(data_dir, "rota", "update", "1", "--to", "24:00") == 0
    capsys.readouterr()
    assert run(data_dir, "rota", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [{"id": 1, "day": "mon", "from": "08:00", "to": "24:00",
                                                   "operators": 2}]
    assert run(data_dir, "duty", "week", "--week", "2026-W13", "--json") == 0
    week = json.loads(capsys.readouterr().out)
    assert week["hours_in_week"] == 167 and week["planned_hours"] == 16 and week["staffed_hours"] == 0

    assert run(data_dir, "faults", "open", "Market Street", "covered", "--description", "bag over dome") == 0
    assert run(data_dir, "faults", "update", "1", "--status", "reported", "--contractor-ref", "JOB-1") == 0
    assert run(data_dir, "faults", "update", "1", "--status", "reported") == 1  # already reported
    assert run(data_dir, "faults", "update", "1", "--status", "repaired") == 0
    capsys.readouterr()
    assert run(data_dir, "faults", "list", "--json") == 0
    (fault,) = json.loads(capsys.readouterr().out)
    assert (fault["kind"], fault["status"], fault["contractor_ref"]) == ("covered", "repaired", "JOB-1")
    # A reference view set by hand from a picture file; a file that is no picture is refused.
    picture = data_dir / "view.png"
    rng = np.random.default_rng(1)
    cv2.imwrite(str(picture), rng.integers(0, 255, (360, 640, 3), dtype=np.uint8))
    assert run(data_dir, "faults", "set-reference", "Market Street", str(picture)) == 0
    assert (data_dir / "picture-references" / "1.jpg").read_bytes() == picture.read_bytes()
    (data_dir / "junk.jpg").write_bytes(b"not a picture")
    assert run(data_dir, "faults", "set-reference", "Market Street", str(data_dir / "junk.jpg")) == 1
    assert run(data_dir, "faults", "reset-reference", "Market Street") == 0
    assert not (data_dir / "picture-references" / "1.jpg").exists()
    assert run(data_dir, "health", "availability", "--week", "2026-W48") == 0
    out = capsys.readouterr().out
    assert "availability, week 2026-W48" in out and "Market Street" in out

    actions = asyncio.run(_actions(settings))
    assert [a for _, a in actions] == ["duty.on", "duty.off", "rota.add", "rota.update", "fault.open",
                                       "fault.update", "fault.reported", "fault.repaired"]
    assert all(actor.startswith("cli:") for actor, _ in actions)
