"""API keys for machine clients (the agent, the avatar worker); admins only."""

from __future__ import annotations

from fastapi import APIRouter

from admin import crud
from admin.api.deps import Admins, SessionDep
from admin.core.security import new_api_key, sha256_hex
from admin.models import ApiKey, utcnow
from admin.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


@router.get("", response_model=list[ApiKeyOut])
def list_keys(db: SessionDep, principal: Admins) -> list[ApiKey]:
    """Keys of the organisation (without their secrets)."""
    return crud.list_owned(db, ApiKey, principal.tenant_id, limit=500)


@router.post("", response_model=ApiKeyCreated, status_code=201)
def create_key(body: ApiKeyCreate, db: SessionDep, principal: Admins) -> ApiKeyCreated:
    """Create a key; the secret is returned once and never stored in clear."""
    secret = new_api_key()
    key = ApiKey(tenant_id=principal.tenant_id, name=body.name, role=body.role,
                 prefix=secret[:10], key_hash=sha256_hex(secret))
    key = crud.create(db, principal.actor, key, resource="api_key", tenant_id=principal.tenant_id)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.delete("/{key_id}", response_model=ApiKeyOut)
def revoke_key(key_id: str, db: SessionDep, principal: Admins) -> ApiKey:
    """Revoke a key (kept for the record)."""
    key = crud.get_owned(db, ApiKey, key_id, principal.tenant_id, what="API key")
    if key.revoked_at is not None:
        return key
    return crud.update(db, principal.actor, key, {"revoked_at": utcnow()}, resource="api_key", action="revoke")
