"""The append-only, hash-chained audit log.

Each tenant has its own chain: entry ``seq`` stores the hash of entry
``seq - 1``, and its own hash covers its content and that link. The hash is an
HMAC keyed with ``ADMIN_AUDIT_KEY``, a secret kept outside the database, so
someone who can write the table cannot re-chain edited history. After every
commit the head of each changed chain (seq and hash, signed with the same key)
is written to ``ADMIN_AUDIT_ANCHOR_DIR`` outside the database; verification
checks the chain against it, so removing the newest entries or emptying the
table is detected too. Database triggers (see the migrations) refuse UPDATE,
DELETE and TRUNCATE on the table.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from admin.models import AuditEntry, utcnow

logger = logging.getLogger("admin.audit")
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
    return hmac.new(_key(), data.encode(), hashlib.sha256).hexdigest()


def _key() -> bytes:
    from admin.core.config import get_settings
    from admin.core.security import derived_key

    s = get_settings()
    return s.audit_key.encode() if s.audit_key else derived_key("audit-chain")


# --- the anchor: signed chain heads outside the database -------------------------------------
def _anchor_path(tenant_id: str) -> Path:
    from admin.core.config import get_settings

    return get_settings().anchor_dir / f"{tenant_id}.json"


def _anchor_mac(tenant_id: str, seq: int, head: str) -> str:
    return hmac.new(_key(), f"anchor|{tenant_id}|{seq}|{head}".encode(), hashlib.sha256).hexdigest()


def write_anchor(tenant_id: str, seq: int, head: str) -> None:
    """Record (seq, head) as the tenant's newest known entry, unless a newer one is already there."""
    path = _anchor_path(tenant_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_anchor(tenant_id)
        if current is not None and current.get("seq", 0) >= seq:
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"tenant_id": tenant_id, "seq": seq, "hash": head,
                                   "at": datetime.now(UTC).isoformat(), "mac": _anchor_mac(tenant_id, seq, head)}))
        os.replace(tmp, path)


def read_anchor(tenant_id: str) -> dict[str, Any] | None:
    """The stored anchor of a tenant's chain, or None."""
    try:
        return json.loads(_anchor_path(tenant_id).read_text())
    except (FileNotFoundError, ValueError):
        return None


@event.listens_for(Session, "after_commit")
def _anchor_after_commit(db: Session) -> None:
    heads = db.info.pop("audit_heads", None)
    for tenant_id, (seq, head) in (heads or {}).items():
        try:
            write_anchor(tenant_id, seq, head)
        except OSError:
            logger.exception("could not write the audit anchor of tenant %s", tenant_id)


@event.listens_for(Session, "after_rollback")
def _forget_heads(db: Session) -> None:
    db.info.pop("audit_heads", None)


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
    db.info.setdefault("audit_heads", {})[tenant_id] = (e.seq, e.hash)  # anchored once committed
    return e


def verify_chain(db: Session, tenant_id: str) -> dict[str, Any]:
    """Recompute a tenant's chain and check it reaches its anchor; report the first break if any."""
    anchor = read_anchor(tenant_id)  # before the rows: an anchor never runs ahead of committed entries
    anchor_seq = anchor.get("seq") if isinstance(anchor, dict) else None
    if anchor is not None and (not isinstance(anchor_seq, int) or not hmac.compare_digest(
            str(anchor.get("mac", "")), _anchor_mac(tenant_id, anchor_seq, str(anchor.get("hash", ""))))):
        return {"ok": False, "entries": None, "broken_at_seq": None, "reason": "anchor signature invalid"}
    prev, expected_seq, count, anchored_hash = GENESIS, 1, 0, None
    rows = db.scalars(select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.seq))
    for e in rows:
        count += 1
        if e.seq != expected_seq:
            return {"ok": False, "entries": count, "broken_at_seq": expected_seq, "reason": "missing entry"}
        if e.prev_hash != prev or not hmac.compare_digest(entry_hash(e), e.hash):
            return {"ok": False, "entries": count, "broken_at_seq": e.seq, "reason": "content or link altered"}
        if e.seq == anchor_seq:
            anchored_hash = e.hash
        prev, expected_seq = e.hash, expected_seq + 1
    if anchor_seq is not None:
        if anchor_seq >= expected_seq:
            return {"ok": False, "entries": count, "broken_at_seq": expected_seq,
                    "reason": f"entries up to {anchor_seq} were anchored but are missing"}
        if anchored_hash != anchor.get("hash"):
            return {"ok": False, "entries": count, "broken_at_seq": anchor_seq, "reason": "anchored entry altered"}
    total = db.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.tenant_id == tenant_id))
    return {"ok": True, "entries": total, "head": prev, "anchored_seq": anchor_seq}
