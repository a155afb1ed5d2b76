"""Users of the caller's organisation (admins manage them; everyone sees themselves)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from admin import crud
from admin.api.deps import Admins, Principal, Readers, SessionDep
from admin.core.security import hash_password
from admin.models import User
from admin.schemas import Limit, Offset, UserCreate, UserOut, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


def _guard_superuser(user: User, principal: Principal) -> None:
    """Only a platform administrator changes or removes a platform administrator (no tenant admin
    can take over the platform by resetting its password)."""
    if user.is_superuser and not principal.is_superuser:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "Only a platform administrator may change a platform administrator's account.")


@router.get("/me", response_model=UserOut)
def read_me(db: SessionDep, principal: Readers) -> User:
    """The signed-in user."""
    if principal.kind != "user":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "API keys have no user record.")
    return db.get(User, principal.id)


@router.get("", response_model=list[UserOut])
def list_users(db: SessionDep, principal: Admins, limit: Limit = 100, offset: Offset = 0) -> list[User]:
    """Users of the organisation."""
    return crud.list_owned(db, User, principal.tenant_id, limit=limit, offset=offset)


@router.post("", response_model=UserOut, status_code=201)
def create_user(body: UserCreate, db: SessionDep, principal: Admins) -> User:
    """Add a user to the organisation."""
    email = body.email.lower()
    if db.scalar(select(User).where(User.email == email)):
        raise HTTPException(status.HTTP_409_CONFLICT, "That e-mail address already has an account.")
    user = User(tenant_id=principal.tenant_id, email=email, full_name=body.full_name,
                hashed_password=hash_password(body.password), role=body.role)
    return crud.create(db, principal.actor, user, resource="user", tenant_id=principal.tenant_id)


@router.get("/{user_id}", response_model=UserOut)
def read_user(user_id: str, db: SessionDep, principal: Admins) -> User:
    """One user."""
    return crud.get_owned(db, User, user_id, principal.tenant_id, what="user")


@router.patch("/{user_id}", response_model=UserOut)
def update_user(user_id: str, body: UserUpdate, db: SessionDep, principal: Admins) -> User:
    """Change a user's name, role, status or password."""
    user = crud.get_owned(db, User, user_id, principal.tenant_id, what="user")
    _guard_superuser(user, principal)
    data = body.model_dump(exclude_unset=True)
    if user.id == principal.id and (data.get("role") not in (None, "admin") or data.get("is_active") is False):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "You cannot demote or deactivate yourself.")
    if "password" in data:
        pw = data.pop("password")
        if pw:
            data["hashed_password"] = hash_password(pw)
            # A reset password ends every session signed in with the old one.
            crud.revoke_user_tokens(db, user.id)
    return crud.update(db, principal.actor, user, data, resource="user")


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: str, db: SessionDep, principal: Admins) -> None:
    """Remove a user."""
    user = crud.get_owned(db, User, user_id, principal.tenant_id, what="user")
    _guard_superuser(user, principal)
    if user.id == principal.id:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "You cannot delete yourself.")
    crud.delete(db, principal.actor, user, resource="user")
