"""Personas: what a digital human says and how."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from admin import crud
from admin.api.deps import READERS, Editors, Principal, SessionDep, require
from admin.call_config import check_persona_voices
from admin.models import KnowledgeBase, Persona, Role
from admin.schemas import Limit, Offset, PersonaIn, PersonaOut, PersonaUpdate

router = APIRouter(prefix="/personas", tags=["personas"])
PersonaReaders = Annotated[Principal, Depends(require(*READERS, Role.agent))]


@router.get("", response_model=list[PersonaOut])
def list_personas(db: SessionDep, principal: PersonaReaders, limit: Limit = 100, offset: Offset = 0) -> list[Persona]:
    """Personas of the organisation."""
    return crud.list_owned(db, Persona, principal.tenant_id, limit=limit, offset=offset)


@router.post("", response_model=PersonaOut, status_code=201)
def create_persona(body: PersonaIn, db: SessionDep, principal: Editors) -> Persona:
    """Create a persona."""
    if body.knowledge_base_id:
        crud.get_owned(db, KnowledgeBase, body.knowledge_base_id, principal.tenant_id, what="knowledge base")
    check_persona_voices(body.model_dump().get("settings"))
    obj = Persona(tenant_id=principal.tenant_id, **body.model_dump())
    return crud.create(db, principal.actor, obj, resource="persona", tenant_id=principal.tenant_id)


@router.get("/{persona_id}", response_model=PersonaOut)
def read_persona(persona_id: str, db: SessionDep, principal: PersonaReaders) -> Persona:
    """One persona."""
    return crud.get_owned(db, Persona, persona_id, principal.tenant_id, what="persona")


@router.patch("/{persona_id}", response_model=PersonaOut)
def update_persona(persona_id: str, body: PersonaUpdate, db: SessionDep, principal: Editors) -> Persona:
    """Change a persona."""
    obj = crud.get_owned(db, Persona, persona_id, principal.tenant_id, what="persona")
    data = body.model_dump(exclude_unset=True)
    if data.get("knowledge_base_id"):
        crud.get_owned(db, KnowledgeBase, data["knowledge_base_id"], principal.tenant_id, what="knowledge base")
    if "settings" in data:
        check_persona_voices(data["settings"])
    return crud.update(db, principal.actor, obj, data, resource="persona")


@router.delete("/{persona_id}", status_code=204)
def delete_persona(persona_id: str, db: SessionDep, principal: Editors) -> None:
    """Delete a persona (avatars using it keep working without one)."""
    crud.delete(db, principal.actor, crud.get_owned(db, Persona, persona_id, principal.tenant_id, what="persona"),
                resource="persona")
