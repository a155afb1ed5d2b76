"""LiveKit access tokens for a caller: one room, at most 15 minutes, dispatching the agent."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from livekit import api as lk

from admin import crud
from admin.api.deps import Principal, SessionDep, require
from admin.core import audit
from admin.core.config import get_settings
from admin.models import Avatar, JobStatus, Role, utcnow
from admin.schemas import CallTokenOut, CallTokenRequest

router = APIRouter(prefix="/tokens", tags=["tokens"])
TokenIssuers = Annotated[Principal, Depends(require(Role.admin, Role.operator, Role.agent))]


@router.post("/livekit", response_model=CallTokenOut, status_code=201)
def livekit_token(body: CallTokenRequest, request: Request, db: SessionDep, principal: TokenIssuers) -> CallTokenOut:
    """A room-scoped join token whose room configuration dispatches ``AGENT_NAME`` with the avatar."""
    s = get_settings()
    request.app.state.rate_limiter.hit(f"token:{principal.kind}:{principal.id}", s.token_rate_limit)
    avatar = crud.get_owned(db, Avatar, body.avatar_id, principal.tenant_id, what="avatar")
    if avatar.status == JobStatus.failed:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"Avatar '{avatar.name}' failed preparation: {avatar.status_detail or 'see its status'}")
    ttl = min(body.ttl_seconds, s.max_token_ttl_seconds)
    session_id = str(uuid.uuid4())
    room = body.room or f"dh-{avatar.id[:8]}-{session_id[:8]}"
    identity = body.identity or f"caller-{session_id[:8]}"
    metadata = {
        "avatar_id": avatar.id,
        "engine": avatar.engine,
        "avatar_dir": avatar.assets_dir if avatar.status == JobStatus.ready else None,
        "persona_id": avatar.persona_id,
        "tenant_id": avatar.tenant_id,
        "session_id": session_id,
        "admin_url": s.public_url or str(request.base_url).rstrip("/"),
    }
    token = (
        lk.AccessToken(s.livekit_api_key, s.livekit_api_secret)
        .with_identity(identity)
        .with_name(body.name or identity)
        .with_ttl(timedelta(seconds=ttl))
        .with_grants(lk.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                                    can_publish_data=True))
        .with_room_config(lk.RoomConfiguration(
            agents=[lk.RoomAgentDispatch(agent_name=s.agent_name, metadata=json.dumps(metadata))]
        ))
        .to_jwt()
    )
    audit.record(db, tenant_id=principal.tenant_id, actor=principal.actor, action="issue_token",
                 resource="livekit_token", resource_id=session_id,
                 changes={"room": room, "identity": identity, "avatar_id": avatar.id, "ttl_seconds": ttl})
    db.commit()
    return CallTokenOut(server_url=s.livekit_url, token=token, room=room, identity=identity,
                        session_id=session_id, expires_at=utcnow() + timedelta(seconds=ttl))
