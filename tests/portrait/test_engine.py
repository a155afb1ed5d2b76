"""The portrait engine honours the worker's interface (see avatar/engines/base.py)."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.engines import EngineError
from avatar.engines import create_engine as registry_create
from avatar.engines.portrait import create_engine

from .conftest import run


def test_registry_builds_portrait_engine(cache_dir):
    eng = registry_create("portrait", width=256, height=320, fps=25, cache_dir=cache_dir)
    info = eng.info
    assert (info.name, info.width, info.height, info.fps, info.sample_rate, info.chunk_frames) == (
        "portrait", 256, 320, 25, 16000, 1)
    out = eng.open_session(None).generate(np.zeros(640, np.float32), speaking=False)
    assert len(out) == 1 and out[0].shape == (320, 256, 3) and out[0].dtype == np.uint8


def test_default_avatar_is_prepared_once_and_cached(engine, cache_dir):
    s = engine.open_session(None)
    frame = s.generate(np.zeros(640, np.float32), speaking=False)[0]
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    assert (next(cache_dir.glob("astronaut-v*")) / "meta.json").exists()
    assert engine.rig(None) is engine.rig(None)  # shared by all calls


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(EngineError, match="unknown portrait engine setting"):
        create_engine(widht=512)
    with pytest.raises(EngineError, match="fps"):
        create_engine(fps=7)


def test_missing_avatar_folder_is_an_engine_error(engine, tmp_path):
    with pytest.raises(EngineError, match="prepare"):
        engine.open_session(tmp_path / "nothing")


def test_silence_keeps_mouth_closed(still_engine):
    s = still_engine.open_session(None)
    frames, states = run(s, np.zeros(640 * 50, np.float32), speaking=False)
    assert max(st.open for st in states) == 0.0
    rig = still_engine.rig()
    sl = rig.mouth.box.sl
    assert np.array_equal(frames[-1][sl], rig.base[sl])


def test_odd_input_never_breaks_a_frame(engine):
    from avatar.engines.base import EngineError

    s = engine.open_session(None)
    for audio in (np.full(640, np.nan, np.float32), np.ones(640) * 2.0, np.full(640, -np.inf)):
        (f,) = s.generate(audio, speaking=True)
        assert f.shape == (512, 512, 3) and f.dtype == np.uint8
    # another size is the caller's bug (the generator cuts exact chunks): one clear error
    with pytest.raises(EngineError, match="renders 640 samples per call, got 100"):
        s.generate(np.zeros(100, np.float32), speaking=True)
