"""Alembic owns the schema: the models and the migration head agree, and
upgrade -> downgrade -> upgrade works, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from admin.migrate import downgrade, upgrade
from admin.models import Base

from .conftest import PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL not configured: run scripts/services.sh start and export $(scripts/services.sh env)")
    name = f"dh_mig_{uuid.uuid4().hex[:8]}"
    admin_engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_models_match_migration_head(scratch_url):
    upgrade(scratch_url)
    assert _diff(scratch_url) == []


def test_upgrade_downgrade_upgrade(scratch_url):
    upgrade(scratch_url)
    assert _tables(scratch_url) == set(Base.metadata.tables)
    downgrade(scratch_url, "base")
    assert _tables(scratch_url) == set()
    upgrade(scratch_url)
    assert _tables(scratch_url) == set(Base.metadata.tables)
    assert _diff(scratch_url) == []
