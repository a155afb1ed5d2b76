"""Item 9: deleting the newest audit entries, or deleting some and re-chaining the rest, still
verified (the hash had no key and the head was not anchored), and TRUNCATE was not refused.
Now the chain is an HMAC with ADMIN_AUDIT_KEY (outside the database) and each commit writes the
signed head to ADMIN_AUDIT_ANCHOR_DIR; verification checks both."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.admin.conftest import requires_pg

from .conftest import API

SQLITE_GUARDS = {
    "audit_log_no_update": "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
                           "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "audit_log_no_delete": "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
                           "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
}


@contextmanager
def owner_rights():
    """A connection of someone who owns the database and switched the guards off."""
    from admin.core.db import get_engine

    engine = get_engine()
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER")) if pg else [
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}")) for name in SQLITE_GUARDS]
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER")) if pg else [
                conn.execute(text(ddl)) for ddl in SQLITE_GUARDS.values()]


def _changes(client, tenant, n: int) -> None:  # noqa: ANN001
    for i in range(n):
        assert client.post(f"{API}/personas", json={"name": f"p{i}"}, headers=tenant.headers["operator"]).status_code == 201


def _verify(client, tenant):  # noqa: ANN001
    return client.get(f"{API}/audit/verify", headers=tenant.headers["admin"]).json()


def test_deleting_the_newest_entries_is_detected(client, tenant):
    _changes(client, tenant, 5)
    assert _verify(client, tenant)["ok"] is True
    with owner_rights() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE tenant_id=:t AND seq > 3"), {"t": tenant.id})
    out = _verify(client, tenant)
    assert out["ok"] is False and out["broken_at_seq"] == 4 and "missing" in out["reason"]


def test_emptying_the_table_is_detected(client, tenant):
    _changes(client, tenant, 2)
    with owner_rights() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE tenant_id=:t"), {"t": tenant.id})
    out = _verify(client, tenant)
    assert out["ok"] is False and out["broken_at_seq"] == 1


def _rechain(tenant_id: str, hasher) -> None:  # noqa: ANN001
    """Delete entry 2, renumber the rest and recompute every link with ``hasher``."""
    from sqlalchemy import select

    from admin.core import audit
    from admin.core.db import session_scope
    from admin.models import AuditEntry

    with session_scope() as db:
        entries = list(db.scalars(select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.seq)))
        db.expunge_all()
    victim, rest = entries[1], entries[:1] + entries[2:]
    prev, updates = audit.GENESIS, []
    for new_seq, e in enumerate(rest, start=1):
        e.seq, e.prev_hash = new_seq, prev
        e.hash = hasher(e)
        updates.append({"s": new_seq, "p": e.prev_hash, "h": e.hash, "i": e.id})
        prev = e.hash
    with owner_rights() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id=:i"), {"i": victim.id})
        for u in updates:  # negative first, so the unique (tenant, seq) never collides
            conn.execute(text("UPDATE audit_log SET seq=:s, prev_hash=:p, hash=:h WHERE id=:i"), {**u, "s": -u["s"]})
        conn.execute(text("UPDATE audit_log SET seq = -seq WHERE tenant_id=:t"), {"t": tenant_id})


def _unkeyed(e) -> str:  # noqa: ANN001
    """The old entry hash: SHA-256 of the same canonical body, no key."""
    from admin.core import audit

    body = {"tenant_id": e.tenant_id, "seq": e.seq, "at": audit._canonical(e.at), "actor_type": e.actor_type,
            "actor_id": e.actor_id, "action": e.action, "resource": e.resource, "resource_id": e.resource_id,
            "changes": e.changes, "client_ip": e.client_ip, "prev_hash": e.prev_hash}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


@pytest.mark.parametrize("hasher", ["unkeyed", "guessed key"])
def test_deleting_and_rechaining_is_detected(client, tenant, hasher, monkeypatch):
    from admin.core import audit

    _changes(client, tenant, 4)
    if hasher == "unkeyed":
        fn = _unkeyed
    else:  # the attacker recomputes with the code but not the deployment's key
        real_key = audit._key()
        monkeypatch.setattr(audit, "_key", lambda: b"change-me-in-production")
        assert audit._key() != real_key
        fn = audit.entry_hash
    _rechain(tenant.id, fn)
    monkeypatch.undo()
    out = _verify(client, tenant)
    assert out["ok"] is False and out["broken_at_seq"] == 1 and out["reason"] == "content or link altered"


def test_a_forged_anchor_is_detected(client, tenant):
    from admin.core import audit

    _changes(client, tenant, 3)
    path = audit._anchor_path(tenant.id)
    anchor = json.loads(path.read_text())
    assert anchor["seq"] == 3
    with owner_rights() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE tenant_id=:t AND seq = 3"), {"t": tenant.id})
    anchor.update(seq=2, hash="0" * 64)  # roll the anchor back without the key
    path.write_text(json.dumps(anchor))
    out = _verify(client, tenant)
    assert out["ok"] is False and out["reason"] == "anchor signature invalid"


def test_anchor_follows_commits_only(client, tenant):
    """A rolled-back change is never anchored (it would read as a deletion)."""
    from admin.core import audit
    from admin.core.db import new_session

    _changes(client, tenant, 1)
    db = new_session()
    try:
        audit.record(db, tenant_id=tenant.id, actor=audit.Actor("system", None), action="x", resource="y")
        db.rollback()
    finally:
        db.close()
    assert json.loads(audit._anchor_path(tenant.id).read_text())["seq"] == 1
    assert _verify(client, tenant)["ok"] is True


@requires_pg
def test_postgres_refuses_truncate(client, tenant):
    from admin.core.db import get_engine

    _changes(client, tenant, 1)
    with pytest.raises(DBAPIError, match="append-only"):
        with get_engine().begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
