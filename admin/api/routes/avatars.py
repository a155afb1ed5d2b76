"""Avatars: CRUD, portrait upload and (re-)preparation by the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from admin import crud
from admin.api.deps import READERS, Editors, Principal, SessionDep, require
from admin.api.uploads import multipart_file_body, read_upload
from admin.call_config import check_voice
from admin.core import audit
from admin.core.config import get_settings
from admin.images import PortraitError, load_portrait
from admin.models import Avatar, JobStatus, Persona, Role
from admin.schemas import AvatarIn, AvatarOut, AvatarUpdate, Limit, Offset
from admin.worker import PREVIEW_FILE, enqueue, prepare_avatar_task, queue_for_engine

router = APIRouter(prefix="/avatars", tags=["avatars"])
AvatarReaders = Annotated[Principal, Depends(require(*READERS, Role.agent, Role.worker))]
REPREPARE_FIELDS = {"engine", "width", "height", "fps"}


@router.get("", response_model=list[AvatarOut])
def list_avatars(db: SessionDep, principal: AvatarReaders, limit: Limit = 100, offset: Offset = 0) -> list[Avatar]:
    """Avatars of the organisation."""
    return crud.list_owned(db, Avatar, principal.tenant_id, limit=limit, offset=offset)


@router.post("", response_model=AvatarOut, status_code=201)
def create_avatar(body: AvatarIn, db: SessionDep, principal: Editors) -> Avatar:
    """Create an avatar; upload its portrait next."""
    if body.persona_id:
        crud.get_owned(db, Persona, body.persona_id, principal.tenant_id, what="persona")
    check_voice("en", body.voice, "voice")
    obj = Avatar(tenant_id=principal.tenant_id, **body.model_dump())
    return crud.create(db, principal.actor, obj, resource="avatar", tenant_id=principal.tenant_id)


@router.get("/{avatar_id}", response_model=AvatarOut)
def read_avatar(avatar_id: str, db: SessionDep, principal: AvatarReaders) -> Avatar:
    """One avatar, with the status and progress of its preparation."""
    return crud.get_owned(db, Avatar, avatar_id, principal.tenant_id, what="avatar")


@router.patch("/{avatar_id}", response_model=AvatarOut)
def update_avatar(avatar_id: str, body: AvatarUpdate, db: SessionDep, principal: Editors) -> Avatar:
    """Change an avatar; a new engine or resolution re-runs preparation."""
    obj = crud.get_owned(db, Avatar, avatar_id, principal.tenant_id, what="avatar")
    data = body.model_dump(exclude_unset=True)
    if data.get("persona_id"):
        crud.get_owned(db, Persona, data["persona_id"], principal.tenant_id, what="persona")
    check_voice("en", data.get("voice"), "voice")
    reprepare = any(k in REPREPARE_FIELDS and data[k] != getattr(obj, k) for k in data)
    if reprepare and obj.portrait_path:
        data.update(status=JobStatus.pending.value, progress=0.0)
    obj = crud.update(db, principal.actor, obj, data, resource="avatar")
    if reprepare and obj.portrait_path:
        enqueue(prepare_avatar_task, obj.id, queue=queue_for_engine(obj.engine))
        db.refresh(obj)
    return obj


@router.delete("/{avatar_id}", status_code=204)
def delete_avatar(avatar_id: str, db: SessionDep, principal: Editors) -> None:
    """Delete an avatar and its files (its past sessions stay, without the link)."""
    obj = crud.get_owned(db, Avatar, avatar_id, principal.tenant_id, what="avatar")
    folder = get_settings().media_dir / obj.tenant_id / "avatars" / obj.id
    files = (obj.portrait_path, obj.assets_dir, folder)
    crud.delete(db, principal.actor, obj, resource="avatar")
    crud.remove_media(*files)


@router.post("/{avatar_id}/portrait", response_model=AvatarOut, status_code=202,
             openapi_extra=multipart_file_body("A JPEG, PNG or WebP portrait"))
async def upload_portrait(avatar_id: str, request: Request, db: SessionDep, principal: Editors) -> Avatar:
    """Upload the portrait (JPEG, PNG or WebP; multipart field ``file``); the engine's preparation
    (face check) then runs as a task.

    The caller and the avatar are checked before the body is read; decoding the image and (in
    embedded mode) preparing it run in a worker thread, never on the event loop.
    """
    s = get_settings()
    obj = await run_in_threadpool(crud.get_owned, db, Avatar, avatar_id, principal.tenant_id, what="avatar")
    _, data = await read_upload(
        request, s.max_portrait_bytes,
        f"The portrait is larger than {s.max_portrait_bytes // (1024 * 1024)} MB; upload a smaller file.")
    return await run_in_threadpool(_store_portrait, db, principal, obj, data)


def _store_portrait(db: Session, principal: Principal, obj: Avatar, data: bytes) -> Avatar:
    s = get_settings()
    try:
        portrait = load_portrait(
            data, max_bytes=s.max_portrait_bytes, max_pixels=s.max_portrait_pixels, min_side=s.min_portrait_side
        )
    except PortraitError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    folder = s.media_dir / obj.tenant_id / "avatars" / obj.id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"portrait-{portrait.sha256[:16]}.png"
    path.write_bytes(portrait.png)
    obj = crud.update(
        db, principal.actor, obj,
        {"portrait_path": str(path), "portrait_sha256": portrait.sha256, "status": JobStatus.pending.value,
         "progress": 0.0, "status_detail": None},
        resource="avatar", action="upload_portrait",
    )
    if not enqueue(prepare_avatar_task, obj.id, queue=queue_for_engine(obj.engine)):
        obj.status_detail = "The task queue is unreachable; preparation will start when you retry."
        db.commit()
    db.refresh(obj)
    return obj


@router.get("/{avatar_id}/portrait", response_class=FileResponse)
def read_portrait(avatar_id: str, db: SessionDep, principal: AvatarReaders) -> FileResponse:
    """The stored (upright, re-encoded, EXIF-free) portrait as PNG."""
    obj = crud.get_owned(db, Avatar, avatar_id, principal.tenant_id, what="avatar")
    if not obj.portrait_path or not Path(obj.portrait_path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This avatar has no portrait yet.")
    return FileResponse(obj.portrait_path, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/{avatar_id}/preview", response_class=FileResponse)
def read_preview(avatar_id: str, db: SessionDep, principal: AvatarReaders) -> FileResponse:
    """A short MP4 of the prepared avatar saying a sentence, rendered as a call renders it."""
    obj = crud.get_owned(db, Avatar, avatar_id, principal.tenant_id, what="avatar")
    clip = Path(obj.assets_dir) / PREVIEW_FILE if obj.assets_dir else None
    if obj.status != JobStatus.ready.value:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"This avatar has no preview yet: it is {obj.status}.")
    if clip is None or not clip.is_file():
        why = ((obj.prep_metadata or {}).get("preview") or {}).get("detail") or "prepare it again to render one"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"This avatar has no preview: {why}.")
    return FileResponse(clip, media_type="video/mp4", headers={"Cache-Control": "private, max-age=60"})


@router.post("/{avatar_id}/prepare", response_model=AvatarOut, status_code=202)
def prepare(avatar_id: str, db: SessionDep, principal: Editors) -> Avatar:
    """Run the engine's preparation again (after a failure or an engine update)."""
    obj = crud.get_owned(db, Avatar, avatar_id, principal.tenant_id, what="avatar")
    if not obj.portrait_path:
        raise HTTPException(status.HTTP_409_CONFLICT, "Upload a portrait first.")
    obj.status, obj.progress, obj.prepared_for = JobStatus.pending.value, 0.0, None
    audit.record(db, tenant_id=obj.tenant_id, actor=principal.actor, action="prepare", resource="avatar",
                 resource_id=obj.id)
    db.commit()
    enqueue(prepare_avatar_task, obj.id, queue=queue_for_engine(obj.engine))
    db.refresh(obj)
    return obj
