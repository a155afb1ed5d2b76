"""Reading an uploaded file after the caller is authenticated, and naming it safely.

Upload routes take the ``Request`` instead of an ``UploadFile`` parameter: FastAPI parses
declared body parameters before it resolves dependencies, so with ``UploadFile`` an
anonymous 300 MB multipart was spooled to disk before its 401. Here the route's
dependencies (principal, role, the target row) run first and the body is read only by
:func:`read_upload`, within the limit that :mod:`admin.core.limits` enforces on the wire.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath
from typing import Any

from fastapi import HTTPException, Request, status
from starlette.datastructures import UploadFile

MAX_NAME_CHARS = 200


def multipart_file_body(description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a multipart body with one binary field ``file``."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": description}},
    }}}}}


async def read_upload(request: Request, max_bytes: int, too_large: str) -> tuple[str | None, bytes]:
    """The file name and bytes of the multipart field ``file``; 413 with ``too_large`` past ``max_bytes``."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "Send the file as multipart/form-data, in a field named 'file'.")
    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                [{"type": "missing", "loc": ["body", "file"], "msg": "Field required: the file to upload"}])
        data = await upload.read(max_bytes + 1)
        name = upload.filename
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, too_large)
    return name, data


def display_name(raw: str | None, default: str) -> str:
    """A file name fit to store and show: no folders, no control or invisible characters, NFC,
    at most 200 characters with its extension kept. Never used as a path on disk."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if not name or name in (".", ".."):
        return default
    if len(name) > MAX_NAME_CHARS:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= 16 else ""
        name = name[: MAX_NAME_CHARS - len(suffix)].rstrip() + suffix
    return name
