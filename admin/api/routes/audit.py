"""The audit log (read-only) and its tamper check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from admin.api.deps import Principal, SessionDep, require
from admin.core.audit import verify_chain
from admin.models import AuditEntry, Role
from admin.schemas import AuditOut

router = APIRouter(prefix="/audit", tags=["audit"])
Auditors = Annotated[Principal, Depends(require(Role.admin, Role.viewer))]


@router.get("", response_model=list[AuditOut])
def list_audit(
    db: SessionDep, principal: Auditors, resource: str | None = None, resource_id: str | None = None,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    """Entries of the organisation in order (page with ``after_seq``)."""
    q = select(AuditEntry).where(AuditEntry.tenant_id == principal.tenant_id, AuditEntry.seq > after_seq)
    if resource:
        q = q.where(AuditEntry.resource == resource)
    if resource_id:
        q = q.where(AuditEntry.resource_id == resource_id)
    return list(db.scalars(q.order_by(AuditEntry.seq).limit(limit)))


@router.get("/verify")
def verify(db: SessionDep, principal: Auditors) -> dict[str, Any]:
    """Recompute the hash chain; ``ok`` is false (with the first broken entry) after tampering."""
    return verify_chain(db, principal.tenant_id)
