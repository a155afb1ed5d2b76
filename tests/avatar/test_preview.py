"""The avatar preview: the prepared face saying a sentence, through the call's own generator."""

from __future__ import annotations

import av
import numpy as np
import pytest

from agent.settings import AgentSettings
from agent.tts import speak
from avatar.engines import prepare_avatar
from avatar.engines.portrait import samples
from avatar.preview import PREVIEW_TEXT, render_preview

from ..portrait.conftest import needs_face_venv


def _tracks(path):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        rate = c.streams.audio[0].rate
    return frames, pcm, rate


@needs_face_venv
def test_a_prepared_portrait_says_the_sentence_in_sync(tmp_path):
    assets = tmp_path / "assets"
    prepare_avatar("portrait", samples.photo(), assets, width=256, height=256, fps=25)
    s = AgentSettings()
    speech = speak(PREVIEW_TEXT["en"], s.model_path(s.piper_voice))
    p = render_preview("portrait", assets, tmp_path / "preview.mp4", speech, 16000, width=256, height=256, fps=25)

    frames, pcm, rate = _tracks(p.path)
    spoken = len(speech) / 16000
    assert len(frames) == p.frames and frames[0].shape == (256, 256)
    assert spoken + 0.4 <= p.seconds <= spoken + 1.5  # the sentence, then the face back at rest
    assert abs(len(pcm) / rate - spoken) < 0.5 and np.abs(pcm).max() > 0.05  # the voice is in the file
    # the mouth moves while it speaks and rests after it
    x, y, w, h = p.mouth_box
    motion = [float(np.abs(b[y:y + h, x:x + w].astype(np.float32) - a[y:y + h, x:x + w]).mean())
              for a, b in zip(frames, frames[1:])]
    talking, tail = np.mean(motion[5:int(25 * spoken) - 5]), np.mean(motion[-8:])
    assert talking > 3 * tail, (talking, tail)
    # the voice starts with the first frame, as the generator paired them (AAC adds no lead)
    with av.open(str(p.path)) as c:
        first_audio = next(iter(c.decode(audio=0))).time
    with av.open(str(p.path)) as c:
        first_video = next(iter(c.decode(video=0))).time
    assert abs(first_audio - first_video) < 0.03, (first_audio, first_video)


def test_bad_speech_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="non-empty mono"):
        render_preview("simple", None, tmp_path / "x.mp4", np.zeros(0, np.int16), 16000)
    assert not (tmp_path / "x.mp4").exists()
