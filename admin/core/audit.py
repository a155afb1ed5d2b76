"""The append-only, hash-chained audit log.

Each tenant has its own chain: entry ``seq`` stores the hash of entry
``seq - 1``, and its own hash covers its content and that link. Database
triggers (see the migration) refuse UPDATE and DELETE on the table, and
:func:`verify_chain` detects rows edited or removed behind the API's back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from admin.models import AuditEntry, utcnow

GENESIS = "0" * 64
# Never copied into the audit log.
SECRET_FIELDS = {"password", "hashed_password", "key_hash", "token_hash", "api_key", "secret"}


@dataclass(frozen=True)
class Actor:
    """Who made a change."""

    type: str  # user, api_key, system
    id: str | None
    ip: str | None = None


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def entry_hash(e: AuditEntry) -> str:
    """The hash an entry must carry, from its content and the previous entry's hash."""
    body = {
        "tenant_id": e.tenant_id,
        "seq": e.seq,
        "at": _canonical(e.at),
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "action": e.action,
        "resource": e.resource,
        "resource_id": e.resource_id,
        "changes": e.changes,
        "client_ip": e.client_ip,
        "prev_hash": e.prev_hash,
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def record(
    db: Session,
    *,
    tenant_id: str,
    actor: Actor,
    action: str,
    resource: str,
    resource_id: str | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    if db.get_bind().dialect.name == "postgresql":
        # Serialise appends per tenant so two requests cannot take the same seq.
        db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": tenant_id})
    elif db.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading the head (a write statement opens a write
        # transaction even when it matches no row): concurrent appends then queue on the
        # lock instead of reading the same head and colliding on (tenant_id, seq).
        db.execute(text("UPDATE audit_log SET seq = seq WHERE 0"))
    last = db.execute(
        select(AuditEntry.seq, AuditEntry.hash)
        .where(AuditEntry.tenant_id == tenant_id)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    e = AuditEntry(
        tenant_id=tenant_id,
        seq=(last.seq + 1) if last else 1,
        at=utcnow(),
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        resource=resource,
        resource_id=resource_id,
        changes=_canonical(changes or {}),
        client_ip=actor.ip,
        prev_hash=last.hash if last else GENESIS,
    )
    e.hash = entry_hash(e)
    db.add(e)
    db.flush()
    return e


def verify_chain(db: Session, tenant_id: str) -> dict[str, Any]:
    """Recompute a tenant's chain; report the first broken entry if any."""
    prev, expected_seq, count = GENESIS, 1, 0
    rows = db.scalars(select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.seq))
    for e in rows:
        count += 1
        if e.seq != expected_seq:
            return {"ok": False, "entries": count, "broken_at_seq": expected_seq, "reason": "missing entry"}
        if e.prev_hash != prev or entry_hash(e) != e.hash:
            return {"ok": False, "entries": count, "broken_at_seq": e.seq, "reason": "content or link altered"}
        prev, expected_seq = e.hash, expected_seq + 1
    total = db.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.tenant_id == tenant_id))
    return {"ok": True, "entries": total, "head": prev}
