"""The audit log: every change through the API, append-only in the database, hash-chained."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

API = "/api/v1"


def test_changes_are_logged_with_actor_and_chain_verifies(client, tenant):
    h = tenant.headers["operator"]
    pid = client.post(f"{API}/personas", json={"name": "P"}, headers=h).json()["id"]
    client.patch(f"{API}/personas/{pid}", json={"name": "Q"}, headers=h)
    client.post(f"{API}/users", json={"email": f"new-{tenant.slug}@example.org", "password": "long enough pw"},
                headers=tenant.headers["admin"])
    log = client.get(f"{API}/audit", headers=tenant.headers["viewer"]).json()
    assert [(e["action"], e["resource"]) for e in log] == [("create", "persona"), ("update", "persona"), ("create", "user")]
    assert log[0]["actor_id"] == tenant.users["operator"] and log[0]["actor_type"] == "user"
    assert "hashed_password" not in str(log[2]["changes"]) and "long enough" not in str(log)
    assert [e["seq"] for e in log] == [1, 2, 3] and log[1]["prev_hash"] == log[0]["hash"]
    assert client.get(f"{API}/audit/verify", headers=tenant.headers["admin"]).json() == {
        "ok": True, "entries": 3, "head": log[2]["hash"], "anchored_seq": 3}


def test_database_refuses_update_and_delete(tenant, client):
    from admin.core.db import get_engine

    client.post(f"{API}/personas", json={"name": "P"}, headers=tenant.headers["operator"])
    for stmt in ("UPDATE audit_log SET action='x' WHERE tenant_id=:t", "DELETE FROM audit_log WHERE tenant_id=:t"):
        with pytest.raises(DBAPIError, match="append-only"):
            with get_engine().begin() as conn:
                conn.execute(text(stmt), {"t": tenant.id})


def test_tampering_behind_the_triggers_is_detected(tenant, client):
    from admin.core.db import get_engine

    h = tenant.headers["operator"]
    for name in ("a", "b", "c"):
        client.post(f"{API}/personas", json={"name": name}, headers=h)
    engine = get_engine()
    # someone with database owner rights disables the guard and edits history
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"))
            conn.execute(text("UPDATE audit_log SET changes='{}' WHERE tenant_id=:t AND seq=2"), {"t": tenant.id})
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("UPDATE audit_log SET changes='{}' WHERE tenant_id=:t AND seq=2"), {"t": tenant.id})
            conn.execute(text("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                              "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"))
    result = client.get(f"{API}/audit/verify", headers=tenant.headers["admin"]).json()
    assert result["ok"] is False and result["broken_at_seq"] == 2
