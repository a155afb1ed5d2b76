"""Organisations. Each user sees only their own; platform admins create new ones."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import select

from admin import crud
from admin.api.deps import Admins, Principal, Readers, SessionDep, require
from admin.core import audit
from admin.core.security import hash_password
from admin.models import Role, Tenant, User
from admin.schemas import TenantCreate, TenantOut, TenantUpdate

router = APIRouter(prefix="/tenants", tags=["tenants"])
Superuser = Annotated[Principal, Depends(require(superuser=True))]


@router.get("/current", response_model=TenantOut)
def current_tenant(db: SessionDep, principal: Readers) -> Tenant:
    """The caller's organisation."""
    return db.get(Tenant, principal.tenant_id)


@router.patch("/current", response_model=TenantOut)
def update_current_tenant(body: TenantUpdate, db: SessionDep, principal: Admins) -> Tenant:
    """Rename the caller's organisation."""
    tenant = db.get(Tenant, principal.tenant_id)
    return crud.update(db, principal.actor, tenant, body.model_dump(exclude_unset=True), resource="tenant")


@router.get("", response_model=list[TenantOut])
def list_tenants(db: SessionDep, principal: Superuser) -> list[Tenant]:
    """All organisations (platform administrators only)."""
    return list(db.scalars(select(Tenant).order_by(Tenant.created_at)))


@router.post("", response_model=TenantOut, status_code=201)
def create_tenant(body: TenantCreate, db: SessionDep, principal: Superuser) -> Tenant:
    """Create an organisation and its first admin (platform administrators only)."""
    if db.scalar(select(Tenant).where(Tenant.slug == body.slug)):
        raise HTTPException(status.HTTP_409_CONFLICT, f"An organisation called '{body.slug}' already exists.")
    if db.scalar(select(User).where(User.email == body.admin_email.lower())):
        raise HTTPException(status.HTTP_409_CONFLICT, "That e-mail address already has an account.")
    tenant = Tenant(name=body.name, slug=body.slug)
    db.add(tenant)
    db.flush()
    admin = User(tenant_id=tenant.id, email=body.admin_email.lower(),
                 hashed_password=hash_password(body.admin_password), role=Role.admin.value)
    db.add(admin)
    db.flush()
    audit.record(db, tenant_id=tenant.id, actor=principal.actor, action="create", resource="tenant",
                 resource_id=tenant.id, changes={"name": body.name, "slug": body.slug})
    audit.record(db, tenant_id=tenant.id, actor=principal.actor, action="create", resource="user",
                 resource_id=admin.id, changes={"email": admin.email, "role": admin.role})
    db.commit()
    return tenant
