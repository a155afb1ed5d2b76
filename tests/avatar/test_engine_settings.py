"""Every engine's settings follow one rule: strings converted, unknown names refused (one sentence)."""

from __future__ import annotations

import pytest

import avatar.worker as worker
from avatar.engines import ENGINES, EngineError, create_engine
from avatar.settings import AvatarSettings


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_an_unknown_setting_is_refused_with_the_known_names(name):
    with pytest.raises(EngineError, match=rf"unknown {name} engine setting\(s\) colour_mode; known: .*fps"):
        create_engine(name, fps=25, colour_mode="warm")


def test_settings_given_as_strings_are_converted_and_bad_values_named():
    engine = create_engine("simple", width="256", height="192", fps="20")
    assert (engine.info.width, engine.info.height, engine.info.fps) == (256, 192, 20)
    with pytest.raises(EngineError, match="portrait engine setting head_motion='lots'"):
        create_engine("portrait", head_motion="lots")
    with pytest.raises(EngineError, match="frame_num must be 1 \\+ 4k"):
        create_engine("flashtalk", frame_num="32")


def test_the_worker_gives_its_engine_options_to_its_own_engine_only(monkeypatch):
    monkeypatch.setattr(worker, "_engines", {})
    settings = AvatarSettings(engine="portrait", width=256, height=256, engine_options={"head_motion": 0.0, "seed": 1})
    # An avatar prepared for another engine: that engine at the worker's size, without portrait's options.
    simple = worker.get_engine(settings, "simple")
    assert simple.info.name == "simple" and simple.info.width == 256
    own = worker.get_engine(settings)
    assert own.info.name == "portrait" and own.settings.head_motion == 0.0 and own.settings.seed == 1
    monkeypatch.setattr(worker, "_engines", {})
    with pytest.raises(EngineError, match="unknown portrait engine setting"):
        worker.get_engine(AvatarSettings(engine="portrait", engine_options={"head_motoin": 0}))
