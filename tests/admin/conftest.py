"""Fixtures for the admin tests.

The database is PostgreSQL when ``DH_TEST_DATABASE_URL`` is set (CI: ``scripts/services.sh``),
else a fresh SQLite file. Tests isolate themselves by creating their own tenants
(random slugs and e-mails), so one migrated database serves the whole run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

PG_URL = os.environ.get("DH_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("DH_TEST_REDIS_URL")
requires_pg = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL not configured: run scripts/services.sh start and export $(scripts/services.sh env)"
)
requires_redis = pytest.mark.skipif(
    not REDIS_URL, reason="Redis not configured: run scripts/services.sh start and export $(scripts/services.sh env)"
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Media and SQLite files of this test run."""
    return tmp_path_factory.mktemp("admin-data")


@pytest.fixture(scope="session")
def db_url(data_dir: Path) -> str:
    """The migrated database the API tests run against."""
    return PG_URL or f"sqlite:///{data_dir / 'admin.db'}"


@pytest.fixture(scope="session", autouse=True)
def _configure(db_url: str, data_dir: Path) -> Iterator[None]:
    """Point the admin settings at the test database, run tasks inline, migrate once."""
    keys = ("ADMIN_DATABASE_URL", "ADMIN_DATA_DIR", "ADMIN_CELERY_EAGER", "ADMIN_KNOWLEDGE_INGESTOR")
    saved = {k: os.environ.get(k) for k in keys}
    # The plain chunker keeps most tests free of the embedding model; test_knowledge runs the real one.
    os.environ.update(ADMIN_DATABASE_URL=db_url, ADMIN_DATA_DIR=str(data_dir), ADMIN_CELERY_EAGER="true",
                      ADMIN_KNOWLEDGE_INGESTOR="admin.ingest:plain_ingestor")
    from admin.core.config import get_settings

    get_settings.cache_clear()
    from admin.migrate import upgrade
    from admin.worker import celery_app

    celery_app.conf.task_always_eager = True
    upgrade(db_url)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


@pytest.fixture
def app():
    """A fresh app (fresh rate-limit counters)."""
    from admin.main import create_app

    return create_app()


@pytest.fixture
def client(app):
    """HTTP client on the app."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@dataclass
class TenantCtx:
    """A tenant with one principal per role; ``headers[role]`` authenticates as it."""

    id: str
    slug: str
    users: dict[str, str] = field(default_factory=dict)  # role -> user id
    emails: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    password: str = "correct horse battery"


def make_tenant(superuser: bool = False) -> TenantCtx:
    """Create a tenant with users admin/operator/viewer (bearer tokens) and keys agent/worker (its own
    calls only) plus platform-agent/platform-worker (the deployment's keys: every organisation's calls)."""
    from admin.core.db import session_scope
    from admin.core.security import hash_password, new_api_key, new_token, sha256_hex
    from admin.models import ApiKey, AuthToken, Tenant, User, utcnow

    slug = f"t-{uuid.uuid4().hex[:10]}"
    ctx = TenantCtx(id="", slug=slug)
    pw_hash = hash_password(ctx.password)
    with session_scope() as db:
        t = Tenant(name=slug, slug=slug)
        db.add(t)
        db.flush()
        ctx.id = t.id
        for role in ("admin", "operator", "viewer"):
            u = User(tenant_id=t.id, email=f"{role}-{slug}@example.org", hashed_password=pw_hash, role=role,
                     is_superuser=superuser and role == "admin")
            db.add(u)
            db.flush()
            tok = new_token()
            db.add(AuthToken(user_id=u.id, token_hash=sha256_hex(tok), expires_at=utcnow() + timedelta(hours=1)))
            ctx.users[role], ctx.emails[role] = u.id, u.email
            ctx.headers[role] = {"Authorization": f"Bearer {tok}"}
        for role in ("agent", "worker"):
            for platform in (False, True):
                key = new_api_key()
                db.add(ApiKey(tenant_id=t.id, name=role, role=role, prefix=key[:10], key_hash=sha256_hex(key),
                              platform=platform))
                ctx.headers[f"platform-{role}" if platform else role] = {"X-API-Key": key}
    return ctx


@pytest.fixture
def tenant() -> TenantCtx:
    """A fresh tenant."""
    return make_tenant()


@pytest.fixture
def other_tenant() -> TenantCtx:
    """A second fresh tenant (for isolation tests)."""
    return make_tenant()


def png_bytes(w: int = 320, h: int = 400, color=(200, 150, 120), mode: str = "RGB", exif_orientation: int | None = None,
              fmt: str = "PNG") -> bytes:
    """A synthetic image."""
    import io

    from PIL import Image

    img = Image.new(mode, (w, h), color if mode == "RGB" else None)
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()
