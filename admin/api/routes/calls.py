"""A call's configuration for the machines that run it: the agent (agent key) and the avatar
worker (worker key) exchange the opaque ticket from the dispatch metadata for what the operator
set up -- the session and its grant, the avatar's persona, its knowledge index and its face.

Nothing here comes from the caller: the ticket was stored when the token was minted and
names the organisation and the avatar; the persona and the knowledge are the avatar's *now*,
so an edit reaches the next call. Version tags (``revision``, also as ``ETag``) let the
machines cache the index and the assets and download them only when they change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy import select

from admin.api.deps import Principal, SessionDep, require
from admin.call_config import (
    INDEX_FILES,
    avatar_ready,
    avatar_revision,
    call_voices,
    dialogue_persona,
    index_revision,
    tar_folder,
)
from admin.core.config import get_settings
from admin.core.security import mint_session_grant
from admin.models import Avatar, CallTicket, KnowledgeBase, Persona, Role, Tenant, Turn, utcnow
from admin.schemas import CallAvatarOut, CallConfigOut, CallKnowledgeOut, CallTurnOut

router = APIRouter(prefix="/agent/calls", tags=["calls"])
Agents = Annotated[Principal, Depends(require(Role.agent))]
HISTORY_TURNS = 40  # turns a resumed call gets back: the conversation so far, for follow-ups
FaceReaders = Annotated[Principal, Depends(require(Role.agent, Role.worker))]


def _ticket(db: SessionDep, ticket: str, principal: Principal) -> tuple[CallTicket, Tenant]:
    """The ticket's row, if this key may run the call: a key of the call's organisation, or a
    platform key (the deployment's own agent). Otherwise 404, like every other tenant's resource."""
    row = db.get(CallTicket, ticket) if 16 <= len(ticket) <= 64 else None
    if row is not None and row.tenant_id != principal.tenant_id and not principal.platform:
        row = None
    tenant = db.get(Tenant, row.tenant_id) if row is not None else None
    if row is None or tenant is None or not tenant.is_active or row.expires_at <= utcnow():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such call: the ticket is unknown or expired.")
    return row, tenant


def _call_parts(db: SessionDep, row: CallTicket) -> tuple[Avatar | None, Persona | None, KnowledgeBase | None]:
    avatar = db.get(Avatar, row.avatar_id) if row.avatar_id else None
    if avatar is not None and avatar.tenant_id != row.tenant_id:
        avatar = None
    persona = db.get(Persona, avatar.persona_id) if avatar is not None and avatar.persona_id else None
    if persona is not None and persona.tenant_id != row.tenant_id:
        persona = None
    kb = db.get(KnowledgeBase, persona.knowledge_base_id) if persona is not None and persona.knowledge_base_id else None
    if kb is not None and kb.tenant_id != row.tenant_id:
        kb = None
    return avatar, persona, kb


@router.get("/{ticket}", response_model=CallConfigOut)
def call_config(ticket: str, db: SessionDep, principal: Agents) -> CallConfigOut:
    """The call's session, grant, persona and the version tags of its knowledge and face.

    ``fallbacks`` says, one sentence each, what the agent must replace with the deployment's
    default (no persona, avatar not prepared); the knowledge is never replaced: a persona
    without a knowledge base answers that it has no approved information.
    """
    row, tenant = _ticket(db, ticket, principal)
    avatar, persona, kb = _call_parts(db, row)
    fallbacks: list[str] = []
    if avatar is None:
        fallbacks.append("the call's avatar was deleted")
    elif persona is None:
        fallbacks.append(f"avatar '{avatar.name}' has no persona")
    if avatar is not None and not avatar_ready(avatar):
        fallbacks.append(f"avatar '{avatar.name}' is not prepared ({avatar.status})")
    s = get_settings()
    knowledge = None
    if kb is not None:
        knowledge = CallKnowledgeOut(id=kb.id, name=kb.name, revision=index_revision(kb), chunks=kb.index_chunks)
    return CallConfigOut(
        session_id=row.session_id,
        session_grant=mint_session_grant(row.tenant_id, row.session_id, s.session_grant_ttl_seconds),
        organisation=tenant.name,
        persona=dialogue_persona(persona, tenant) if persona is not None else None,
        persona_id=persona.id if persona is not None else None,
        knowledge=knowledge,
        avatar=CallAvatarOut(id=avatar.id, name=avatar.name, engine=avatar.engine, status=avatar.status,
                             revision=avatar_revision(avatar), voice=avatar.voice) if avatar is not None else None,
        voices=call_voices(avatar, persona),
        fallbacks=fallbacks,
        history=[CallTurnOut(seq=t.seq, speaker=t.speaker, text=t.text, language=t.language) for t in reversed(
            db.scalars(select(Turn).where(Turn.session_id == row.session_id).order_by(Turn.seq.desc())
                       .limit(HISTORY_TURNS)).all())],
    )


def _tar_response(request: Request, revision: str, data_fn) -> Response:
    etag = f'"{revision}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(data_fn(), media_type="application/x-tar", headers={"ETag": etag, "Cache-Control": "no-store"})


@router.get("/{ticket}/knowledge", responses={200: {"content": {"application/x-tar": {}}}, 304: {}})
def call_knowledge(ticket: str, request: Request, db: SessionDep, principal: Agents) -> Response:
    """The call's knowledge index (``chunks.jsonl``, ``embeddings.npy``, ``meta.json``) as a tar."""
    row, _tenant = _ticket(db, ticket, principal)
    _avatar, _persona, kb = _call_parts(db, row)
    revision = index_revision(kb) if kb is not None else None
    if kb is None or revision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This call's persona has no knowledge index (yet).")
    return _tar_response(request, revision, lambda: tar_folder(Path(kb.index_dir), INDEX_FILES))


@router.get("/{ticket}/avatar", responses={200: {"content": {"application/x-tar": {}}}, 304: {}})
def call_avatar_assets(ticket: str, request: Request, db: SessionDep, principal: FaceReaders) -> Response:
    """The call's prepared avatar assets (the engine's files) as a tar; 404 until prepared."""
    row, _tenant = _ticket(db, ticket, principal)
    avatar, _persona, _kb = _call_parts(db, row)
    revision = avatar_revision(avatar) if avatar is not None else None
    if avatar is None or revision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This call's avatar has no prepared assets.")
    return _tar_response(request, revision, lambda: tar_folder(Path(avatar.assets_dir)))
