"""What the command line leaves on disk and on the terminal (issue 11, found 10 and 14): files
0640, folders 0750, the key 0600; an existing open data folder is closed; a read-only database
is one clear line, not a driver traceback; Alembic's INFO lines only with ``-v``.

Each runs the real ``controlroom`` command in a child process started with the usual umask
022, as a shell would start it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60


def controlroom(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLROOM_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "controlroom.cli", *argv], cwd=ROOT, env={**base, **(env or {})},
        capture_output=True, text=True, timeout=TIMEOUT_S, preexec_fn=lambda: os.umask(0o022),
    )


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.mark.slow
def test_files_0640_folders_0750_key_0600_and_no_alembic_chatter(tmp_path):
    data = tmp_path / "data"
    pw = tmp_path / "pw"
    pw.write_text("pale moon river lantern\n")
    r = controlroom("--data-dir", str(data), "users", "add", "olive", "--role", "operator", "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    # A new data folder: its migrations ran, and said nothing about it.
    assert "alembic" not in r.stderr and "Running upgrade" not in r.stderr, r.stderr
    found = modes(data)
    assert found["."] == 0o750 and found["secret.key"] == 0o600 and found["controlroom.db"] == 0o640, found
    assert not {name: oct(m) for name, m in found.items() if m & 0o007}, "readable by other users"
    # With -v the migration context is there again.
    r = controlroom("-v", "--data-dir", str(data), "users", "list")
    assert r.returncode == 0 and "alembic.runtime.migration" in r.stderr


@pytest.mark.slow
def test_an_open_data_folder_is_closed_and_a_read_only_database_is_one_clear_line(tmp_path):
    data = tmp_path / "data"
    assert controlroom("--data-dir", str(data), "users", "list").returncode == 0
    data.chmod(0o755)  # as an older version left it
    pw = tmp_path / "pw"
    pw.write_text("pale moon river lantern\n")
    # Read-only as SQLite sees it, whoever runs the test (root ignores file modes).
    url = f"sqlite+aiosqlite:///file:{data / 'controlroom.db'}?mode=ro&uri=true"
    r = controlroom("--data-dir", str(data), "users", "add", "olive", "--role", "operator", "--password-file", str(pw),
                    env={"CONTROLROOM_DATABASE_URL": url})
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and "was open to other users" in lines[0], r.stderr
    assert r.returncode == 1 and "is read-only" in lines[1] and "Traceback" not in r.stderr, r.stderr


@pytest.mark.postgres
async def test_a_read_only_postgresql_database_is_named_as_such(pg_url):
    """The same on PostgreSQL: a database (here one set read-only, as a hot standby is) fails
    with DatabaseReadOnly, not asyncpg's ReadOnlySQLTransactionError and its traceback."""
    from conftest import _pg

    from storage.db import DatabaseReadOnly, make_engine
    from storage.migrate import upgrade

    _pg(f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" SET default_transaction_read_only = on')
    engine = make_engine(pg_url)
    try:
        with pytest.raises(DatabaseReadOnly, match="is read-only .*read-only transaction"):
            await upgrade(engine)
    finally:
        await engine.dispose()
