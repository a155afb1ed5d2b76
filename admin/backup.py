"""Backup and restore of a deployment's admin state: the database, the media folder (portraits,
prepared avatars, documents) and the audit chain's signed heads, in one ``.tar.gz``.

    python -m admin backup /backups/dh-2026-12-01.tar.gz
    python -m admin restore /backups/dh-2026-12-01.tar.gz        # into an empty database
    python -m admin restore FILE --replace                        # over an existing one

PostgreSQL is dumped with ``pg_dump --format=custom`` (a consistent snapshot while the API keeps
serving) and restored with ``pg_restore``; SQLite with its online backup API. The archive's
``manifest.json`` says what it holds and the migration revision it was taken at; a restore refuses
an archive from a newer revision than this code knows (upgrade the code first), and after a
restore from an older one the next ``serve`` migrates it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from admin.core.config import get_settings

FORMAT = 1


class BackupError(RuntimeError):
    """A backup or restore that cannot be done as asked (one clear message)."""


def _pg_tool(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    tool = str(found[-1]) if found else shutil.which(name)
    if not tool:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return tool


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password, and the password in PGPASSWORD."""
    u = make_url(url)
    env = {"PGPASSWORD": u.password or ""}
    plain = u.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            if not inspect(c).has_table("alembic_version"):
                return None
            return c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _migrations() -> tuple[str, set[str]]:
    """This code's migration head and every revision it knows."""
    from alembic.script import ScriptDirectory

    from admin.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), {r.revision for r in scripts.walk_revisions()}


def _kind(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def _sqlite_copy(src: Path | str, dst: Path | str) -> None:
    """SQLite's online backup: a consistent copy while others may be writing."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        with b:
            a.backup(b)
    finally:
        a.close()
        b.close()


def _run(argv: list[str], env: dict[str, str]) -> None:
    out = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {out.stderr.strip()[-800:]}")


def backup(archive: Path) -> dict:
    """Write the archive; returns its manifest."""
    s = get_settings()
    url = s.sqlalchemy_url
    t0 = time.monotonic()
    manifest = {"format": FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "revision": _revision(url), "database": _kind(url)}
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / ("database.pgdump" if manifest["database"] == "postgresql" else "database.sqlite")
        if manifest["database"] == "postgresql":
            conninfo, env = _libpq(url)
            _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={db_file}",
                  f"--dbname={conninfo}"], env)
        else:
            _sqlite_copy(make_url(url).database, db_file)
        partial = archive.with_name(archive.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(db_file, arcname=db_file.name)
            for folder, name in ((s.media_dir, "media"), (s.anchor_dir, "audit-anchors")):
                if folder.is_dir():
                    tar.add(folder, arcname=name)
            manifest["seconds"] = round(time.monotonic() - t0, 2)
            m = Path(tmp) / "manifest.json"
            m.write_text(json.dumps(manifest, indent=2))
            tar.add(m, arcname="manifest.json")
        partial.chmod(0o600)
        partial.replace(archive)  # a half-written archive never has the final name
    manifest["bytes"] = archive.stat().st_size
    return manifest


def restore(archive: Path, *, replace: bool = False) -> dict:
    """Put the archive's database, media and audit heads in place; returns its manifest."""
    s = get_settings()
    url = s.sqlalchemy_url
    if not archive.is_file():
        raise BackupError(f"{archive} does not exist")
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp, filter="data")
        root = Path(tmp)
        try:
            manifest = json.loads((root / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise BackupError(f"{archive} is not a backup of this admin (no manifest.json)") from exc
        head, known = _migrations()
        if manifest.get("revision") and manifest["revision"] not in known:
            raise BackupError(f"the backup is at migration {manifest['revision']}, which this code does not know "
                              f"(head {head}): restore it with the version that made it, or upgrade the code first")
        current = _revision(url)
        if current is not None and not replace:
            raise BackupError("the database is not empty: restore into an empty one, or pass --replace to "
                              "overwrite it (its current content is lost)")
        want = _kind(url)
        if manifest["database"] != want:
            raise BackupError(f"the backup holds a {manifest['database']} database and this admin uses {want}")
        if want == "postgresql":
            conninfo, env = _libpq(url)
            _run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                  "--single-transaction", f"--dbname={conninfo}", str(root / "database.pgdump")], env)
        else:
            target = Path(make_url(url).database)
            target.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_copy(root / "database.sqlite", target)
        for name, folder in (("media", s.media_dir), ("audit-anchors", s.anchor_dir)):
            if (root / name).is_dir():
                if folder.exists():
                    shutil.rmtree(folder)
                folder.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(root / name, folder)
    return manifest
