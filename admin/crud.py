"""Reads and writes shared by the routes: always scoped to one tenant, always audited.

``get_owned`` answers 404 for another tenant's row (not 403), so ids of other
tenants' data cannot be probed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.core import audit
from admin.core.audit import Actor

T = TypeVar("T")
logger = logging.getLogger("admin.crud")


def get_owned(db: Session, model: type[T], obj_id: str, tenant_id: str, *, what: str | None = None) -> T:
    """The row ``obj_id`` of ``model`` if it belongs to ``tenant_id``, else HTTP 404."""
    obj = db.get(model, obj_id)
    if obj is None or getattr(obj, "tenant_id", None) != tenant_id:
        name = what or getattr(model, "__tablename__", "item").rstrip("s").replace("_", " ")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No {name} with id {obj_id} in your organisation.")
    return obj


def list_owned(db: Session, model: type[T], tenant_id: str, *, limit: int = 100, offset: int = 0) -> list[T]:
    """Rows of ``model`` belonging to ``tenant_id``, newest first when the model has ``created_at``."""
    q = select(model).where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    if hasattr(model, "created_at"):
        q = q.order_by(model.created_at.desc())  # type: ignore[attr-defined]
    return list(db.scalars(q.limit(limit).offset(offset)))


def _snapshot(obj: Any, fields: list[str] | None = None) -> dict[str, Any]:
    cols = [c.key for c in obj.__table__.columns]
    return {c: getattr(obj, c) for c in cols if fields is None or c in fields}


def create(db: Session, actor: Actor, obj: T, *, resource: str, tenant_id: str) -> T:
    """Insert ``obj`` and its audit entry, then commit."""
    db.add(obj)
    db.flush()
    audit.record(
        db, tenant_id=tenant_id, actor=actor, action="create", resource=resource,
        resource_id=str(obj.id), changes=_snapshot(obj),  # type: ignore[attr-defined]
    )
    db.commit()
    db.refresh(obj)
    return obj


def update(db: Session, actor: Actor, obj: T, data: dict[str, Any], *, resource: str, action: str = "update") -> T:
    """Apply ``data`` to ``obj``, audit the before/after of changed fields, commit."""
    changed: dict[str, Any] = {}
    for key, value in data.items():
        old = getattr(obj, key)
        if old != value:
            changed[key] = {"from": old, "to": value}
            setattr(obj, key, value)
    if changed:
        audit.record(  # a tenant row is its own tenant
            db, tenant_id=getattr(obj, "tenant_id", None) or obj.id, actor=actor, action=action,  # type: ignore[attr-defined]
            resource=resource, resource_id=str(obj.id), changes=changed,  # type: ignore[attr-defined]
        )
    db.commit()
    db.refresh(obj)
    return obj


def delete(db: Session, actor: Actor, obj: Any, *, resource: str) -> None:
    """Delete ``obj`` and keep its last state in the audit log, then commit."""
    audit.record(
        db, tenant_id=obj.tenant_id, actor=actor, action="delete", resource=resource,
        resource_id=str(obj.id), changes=_snapshot(obj),
    )
    db.delete(obj)
    db.commit()


def revoke_user_tokens(db: Session, user_id: str) -> int:
    """Revoke every live bearer token of a user (after a password change); returns how many."""
    from admin.models import AuthToken, utcnow

    now = utcnow()
    tokens = list(db.scalars(select(AuthToken).where(AuthToken.user_id == user_id, AuthToken.revoked_at.is_(None))))
    for t in tokens:
        t.revoked_at = now
    return len(tokens)


def remove_media(*paths: str | Path | None) -> None:
    """Delete files or folders of a deleted row, but only inside ``media_dir`` (never follows a
    path stored elsewhere); call after the commit, so a failed delete leaves the files."""
    from admin.core.config import get_settings

    root = get_settings().media_dir.resolve()
    for p in paths:
        if not p:
            continue
        path = Path(p)
        try:
            resolved = path.resolve()
        except OSError:
            continue
        if resolved == root or not resolved.is_relative_to(root):
            logger.warning("not removing %s: outside the media folder", path)
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError:
            logger.exception("could not remove %s", path)
