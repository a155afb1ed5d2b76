"""`python -m admin backup` / `restore`: what an operator set up (users, keys, a persona, an uploaded
portrait, the audit chain) survives a lost database and media folder, through the real CLI on the
real PostgreSQL (a database of its own), and a restore never silently overwrites."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("DH_TEST_DATABASE_URL")


@pytest.fixture
def fresh_databases():
    """Two new, empty PostgreSQL databases (the test user may create them); dropped afterwards."""
    if not PG_URL:
        pytest.skip("needs DH_TEST_DATABASE_URL (make test starts PostgreSQL)")
    admin_url = make_url(PG_URL)
    names = [f"dh_backup_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        for n in names:
            c.execute(text(f'CREATE DATABASE "{n}"'))
    try:
        yield [admin_url.set(database=n).render_as_string(hide_password=False) for n in names]
    finally:
        with eng.connect() as c:
            for n in names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        eng.dispose()


def admin_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "admin", *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=180)
    if check:
        assert out.returncode == 0, out.stderr[-2000:]
    return out


def count(url: str, sql: str) -> int:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(text(sql)).scalar()
    finally:
        eng.dispose()


def test_backup_and_restore_bring_a_deployment_back(fresh_databases, tmp_path):
    first, second = fresh_databases
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADMIN_")}
    env.update(ADMIN_DATABASE_URL=first, ADMIN_DATA_DIR=str(data), ADMIN_CELERY_EAGER="true")

    admin_cli(env, "migrate")
    admin_cli(env, "create-admin", "--email", "it@branch.example", "--password", "a-long-password-1", "--tenant", "main")
    key = admin_cli(env, "create-api-key", "--tenant", "main", "--platform").stdout.strip()
    portrait = data / "media" / "avatars" / "a1" / "portrait.png"
    portrait.parent.mkdir(parents=True, exist_ok=True)
    portrait.write_bytes(b"\x89PNG portrait bytes")
    users = count(first, "SELECT count(*) FROM users")
    audit = count(first, "SELECT count(*) FROM audit_log")
    assert users == 1 and audit >= 2

    archive = tmp_path / "backups" / "dh.tar.gz"
    out = admin_cli(env, "backup", str(archive))
    assert archive.is_file() and "backup written" in out.stderr
    assert archive.stat().st_mode & 0o777 == 0o600

    # the box is lost: a new, empty database and no media folder
    import shutil

    shutil.rmtree(data / "media")
    env2 = {**env, "ADMIN_DATABASE_URL": second}
    out = admin_cli(env2, "restore", str(archive))
    assert "restored" in out.stderr
    assert count(second, "SELECT count(*) FROM users") == users
    assert count(second, "SELECT count(*) FROM audit_log") == audit
    assert portrait.read_bytes() == b"\x89PNG portrait bytes"
    # the restored key still opens the API's door (hashed key rows came back)
    from admin.core.security import sha256_hex

    assert count(second, f"SELECT count(*) FROM api_keys WHERE key_hash = '{sha256_hex(key)}' AND platform") == 1

    # restoring over a database that has content needs --replace, and says so
    again = admin_cli(env2, "restore", str(archive), check=False)
    assert again.returncode == 2 and "--replace" in again.stderr and "Traceback" not in again.stderr
    admin_cli(env2, "create-admin", "--email", "late@branch.example", "--password", "a-long-password-2",
              "--tenant", "main")
    admin_cli(env2, "restore", str(archive), "--replace")
    assert count(second, "SELECT count(*) FROM users") == users  # back to the backup's state


def test_restore_refuses_what_is_not_a_backup(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADMIN_")}
    env.update(ADMIN_DATA_DIR=str(tmp_path / "data"))
    import tarfile

    bogus = tmp_path / "bogus.tar.gz"
    (tmp_path / "x.txt").write_text("not a backup")
    with tarfile.open(bogus, "w:gz") as t:
        t.add(tmp_path / "x.txt", arcname="x.txt")
    for target in (bogus, tmp_path / "missing.tar.gz"):
        out = admin_cli(env, "restore", str(target), check=False)
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), out.stderr
