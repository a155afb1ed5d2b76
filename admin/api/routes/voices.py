"""The voices this deployment can speak with, for the console's pickers (agent/voices.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from admin.api.deps import READERS, Principal, require
from admin.core.config import get_settings

router = APIRouter(prefix="/voices", tags=["voices"])
VoiceReaders = Annotated[Principal, Depends(require(*READERS))]


class VoicesOut(BaseModel):
    en: list[str]
    zh: list[str]
    checked: bool  # False: the admin has no models folder, so any well-formed name is taken (the agent checks it)


@router.get("", response_model=VoicesOut)
def list_voices(principal: VoiceReaders) -> VoicesOut:
    """Voice names per language that an avatar (``voice``, English) or a persona (``settings.voices``) may name."""
    from agent.voices import ESPEAK, catalogue

    models = Path(get_settings().models_dir)
    if not models.is_dir():
        return VoicesOut(en=[ESPEAK], zh=[ESPEAK], checked=False)
    return VoicesOut(**catalogue(models), checked=True)
