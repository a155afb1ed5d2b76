"""CPU portrait engine: a lip-synced talking portrait (photo or cartoon) without a GPU.

``create_engine(**settings)`` builds the engine (settings: :class:`PortraitSettings`);
``prepare(image, out_dir, **settings)`` turns one portrait into an avatar folder.
Benchmark: ``python -m avatar.engines.portrait.bench``; contact sheets:
``python -m avatar.engines.portrait.sheet``.
"""

from .prepare import prepare
from .settings import PortraitSettings


def create_engine(**settings):
    """Build the portrait engine from keyword settings (width, height, fps, ...; see PortraitSettings)."""
    from .engine import PortraitEngine

    return PortraitEngine(PortraitSettings.from_kwargs(**settings))


__all__ = ["PortraitSettings", "create_engine", "prepare"]
