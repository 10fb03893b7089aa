"""Inventory through the CLI and the storage layer: validation, secrets never shown, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlroom.cli import main
from storage import Invalid
from storage.db import transaction
from storage.inventory import (
    CameraSpec,
    CameraUpdate,
    add_camera,
    camera_public,
    get_camera,
    update_camera,
)
from storage.keys import load_or_create_keys

REPO = Path(__file__).resolve().parent.parent


def cli(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), *args])


async def test_password_encrypted_and_never_listed(sessions, tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "key")
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    async with transaction(sessions) as s:
        cam = await add_camera(s, CameraSpec(name="Town Centre 01", main_url="rtsp://127.0.0.1/x",
                                             username="admin", password="hunter2-secret"), keys)
    assert "hunter2" not in cam.password_enc
    assert keys.decrypt(cam.password_enc) == "hunter2-secret"
    public = json.dumps(camera_public(cam))
    assert "hunter2" not in public and '"has_password": true' in public
    async with transaction(sessions) as s:
        await update_camera(s, cam.id, CameraUpdate(password="new-pass"), keys)
        again = await get_camera(s, "Town Centre 01")
    assert keys.decrypt(again.password_enc) == "new-pass"


def test_url_with_credentials_refused() -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        CameraSpec(name="x", main_url="rtsp://admin:pw@10.0.0.1/stream")


def test_cli_add_list_show_update_remove(data_dir: Path, tmp_path: Path, capsys) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pass\n")
    assert cli(data_dir, "cameras", "add", "Queens Park 01", "--site", "Queens Park", "--main-url",
               "rtsp://127.0.0.1:9/main", "--username", "admin", "--password-file", str(pw)) == 0
    assert cli(data_dir, "cameras", "list", "--json") == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("["):])
    assert listed[0]["name"] == "Queens Park 01" and listed[0]["site"] == "Queens Park"
    assert {"id", "name", "kind", "state"} <= set(listed[0])
    assert cli(data_dir, "cameras", "show", "Queens Park 01") == 0
    shown = capsys.readouterr().out
    assert "s3cret" not in out + shown
    assert cli(data_dir, "cameras", "update", "Queens Park 01", "--disable", "--retention-days", "14") == 0
    capsys.readouterr()
    assert cli(data_dir, "cameras", "show", "1") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["enabled"] is False and shown["retention_days"] == 14 and shown["state"] == "disabled"
    assert cli(data_dir, "cameras", "remove", "Queens Park 01") == 0
    assert cli(data_dir, "cameras", "show", "Queens Park 01") == 1
    assert "no camera" in capsys.readouterr().err


def test_import_example_and_export(data_dir: Path, capsys) -> None:
    assert cli(data_dir, "cameras", "import", str(REPO / "config" / "inventory.example.toml")) == 0
    capsys.readouterr()
    assert cli(data_dir, "cameras", "export") == 0
    exported = capsys.readouterr().out
    assert 'name = "ANPR Horns Bridge 1"' in exported and 'direction = "northbound"' in exported


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[[cameras]]\nname = 'A'\nkind = 'dome'\n", "cameras[0] (A): kind"),
        ("[[cameras]]\nname = 'A'\nmain_url = 'rtsp://u:p@h/x'\n", "cameras[0] (A): main_url"),
        ("[[cameras]]\nname = 'A'\nretention = 3\n", "cameras[0] (A): retention"),
        ("[[cameras]\nname = 'A'\n", "not valid TOML"),
        ("[[camera]]\nname = 'A'\n", "unknown top-level keys"),
    ],
)
def test_malformed_inventory_names_file_and_field(data_dir: Path, tmp_path: Path, capsys, content, expected) -> None:
    bad = tmp_path / "inventory.toml"
    bad.write_text(content)
    assert cli(data_dir, "cameras", "import", str(bad)) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and expected in err


def test_duplicate_name_refused(data_dir: Path, capsys) -> None:
    assert cli(data_dir, "cameras", "add", "Dup") == 0
    assert cli(data_dir, "cameras", "add", "Dup") == 1
    assert "already exists" in capsys.readouterr().err


def test_invalid_update_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="retention_days"):
        CameraUpdate(retention_days=0)
    with pytest.raises(Invalid):
        from storage.inventory import parse_spec

        parse_spec(CameraSpec, {"name": ""}, "api")
