"""Avatar engines behind one interface (see :mod:`avatar.engines.base`).

Engines are looked up by name and imported lazily, so the worker only pays for
the engine it runs (the FlashTalk engine pulls in torch; the simple one does not).
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Engine, EngineError, EngineInfo, EngineSession, PreparationError

# name -> "module:factory"; a factory takes keyword settings and returns an Engine.
ENGINES: dict[str, str] = {
    "simple": "avatar.engines.simple:create_engine",
    "portrait": "avatar.engines.portrait:create_engine",
    "flashtalk": "avatar.engines.flashtalk:create_engine",
}


def create_engine(name: str, **settings: Any) -> Engine:
    """Build the engine called ``name`` with its settings (width, height, fps, paths...)."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(
            f"unknown avatar engine {name!r}; set AVATAR_ENGINE to one of: {', '.join(sorted(ENGINES))}"
        ) from None
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(**settings)


def prepare_avatar(name: str, image: Any, out_dir: Any, **settings: Any) -> dict[str, Any]:
    """Run engine ``name``'s once-per-avatar preparation of ``image`` (RGB uint8 array) into ``out_dir``.

    Each engine module exposes ``prepare(image, out_dir, **settings) -> dict`` (metadata to store);
    it raises :class:`PreparationError` with one clear sentence for a bad image.
    """
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown avatar engine {name!r}") from None
    module = importlib.import_module(target.partition(":")[0])
    return module.prepare(image, out_dir, **settings)


__all__ = [
    "prepare_avatar",
    "ENGINES",
    "Engine",
    "EngineError",
    "EngineInfo",
    "EngineSession",
    "PreparationError",
    "create_engine",
]
