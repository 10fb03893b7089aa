"""``controlroom users ...`` and ``controlroom tokens ...`` on a data directory, while the
service runs on it: what the CLI does takes effect in the service."""

from __future__ import annotations

import asyncio
import json

from controlroom.app import create_app
from controlroom.cli import main as cli


async def run(data_dir, *argv: str) -> int:
    return await asyncio.to_thread(cli, ["--data-dir", str(data_dir), *argv])


async def test_users_and_tokens_from_the_cli(aiohttp_client, settings, data_dir, capsys, monkeypatch):
    monkeypatch.delenv("CONTROLROOM_DATABASE_URL", raising=False)
    settings = settings.with_overrides(**{"security.auth_cache_s": 0})
    client = await aiohttp_client(create_app(settings, record=False))
    pw = data_dir / "pw"
    pw.write_text("operator password 1\n")
    assert await run(data_dir, "users", "add", "olive", "--role", "operator", "--password-file", str(pw)) == 0
    weak = data_dir / "weak"
    weak.write_text("short\n")
    assert await run(data_dir, "users", "add", "weak", "--role", "operator", "--password-file", str(weak)) == 1
    assert await run(data_dir, "users", "add", "olive", "--role", "operator", "--password-file", str(pw)) == 1
    capsys.readouterr()

    assert await run(data_dir, "users", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert {u["username"]: u["role"] for u in listed} == {"admin": "administrator", "olive": "operator"}
    assert "password" not in json.dumps(listed).replace("must_change_password", "")

    r = await client.post("/api/v1/session", json={"username": "olive", "password": "operator password 1"})
    assert r.status == 200

    # A token made by the CLI works against the running service, within its scopes. It needs the
    # user's own password (rights are not transferable by whoever runs the CLI) and scopes within
    # the user's role; refusals are audited.
    assert await run(data_dir, "tokens", "create", "exporter", "--user", "olive", "--scope", "inventory_read",
                     "--expires", "2h", "--password-file", str(weak)) == 1
    assert await run(data_dir, "tokens", "create", "exporter", "--user", "olive", "--scope", "admin",
                     "--expires", "2h", "--password-file", str(pw)) == 1
    assert "beyond" in capsys.readouterr().err
    assert await run(data_dir, "tokens", "create", "exporter", "--user", "olive", "--scope", "inventory_read",
                     "--expires", "2h", "--password-file", str(pw)) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("crt_")
    bearer = {"Authorization": f"Bearer {token}"}
    client.session.cookie_jar.clear()
    assert (await client.get("/api/v1/cameras", headers=bearer)).status == 200
    assert await run(data_dir, "tokens", "create", "bad", "--user", "olive", "--scope", "nonsense", "--expires", "2h",
                     "--password-file", str(pw)) == 1
    assert await run(data_dir, "tokens", "list") == 0
    listing = capsys.readouterr().out
    assert "exporter" in listing and token not in listing
    assert await run(data_dir, "tokens", "revoke", "exporter") == 0
    assert (await client.get("/api/v1/cameras", headers=bearer)).status == 401

    # Reset password: the old one stops working, the new one must be changed at login.
    pw2 = data_dir / "pw2"
    pw2.write_text("another password 2\n")
    assert await run(data_dir, "users", "reset-password", "olive", "--password-file", str(pw2)) == 0
    r = await client.post("/api/v1/session", json={"username": "olive", "password": "operator password 1"})
    assert r.status == 401
    r = await client.post("/api/v1/session", json={"username": "olive", "password": "another password 2"})
    assert r.status == 200 and (await r.json())["password_change_required"] is True

    # Disable: the running service refuses the session and new logins.
    assert await run(data_dir, "users", "disable", "olive") == 0
    assert (await client.get("/api/v1/session")).status == 401
    r = await client.post("/api/v1/session", json={"username": "olive", "password": "another password 2"})
    assert r.status == 403
    # The last administrator cannot be disabled.
    assert await run(data_dir, "users", "disable", "admin") == 1

    # Everything above is in the audit trail, by the OS user, and the chain verifies.
    capsys.readouterr()
    assert await run(data_dir, "audit", "export") == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    actions = [(x["actor"].split(":")[0], x["action"]) for x in lines if x["actor"].startswith("cli:")]
    assert ("cli", "user.add") in actions and ("cli", "token.create") in actions
    assert ("cli", "token.create_refused") in actions and ("cli", "token.revoke") in actions and ("cli", "user.disable") in actions
    assert ("cli", "user.reset_password") in actions
    created = [x for x in lines if x["action"] == "token.create"]
    assert len(created) == 1 and created[0]["target"] == "token:exporter"  # the refused ones made nothing
    text = json.dumps(lines)
    assert "operator password 1" not in text and "another password 2" not in text and token not in text
    assert await run(data_dir, "audit", "verify") == 0
