"""Contact sheets for a person to look at, and the speed budget."""

from __future__ import annotations

import time

import cv2
import numpy as np

from avatar.engines.portrait.sheet import contact_sheet

from .conftest import OUT, run


def _sheet(engine, avatar, sentence, name):
    frames, states = run(engine.open_session(avatar), sentence)
    sheet = contact_sheet(list(frames), [s.open for s in states], engine.rig(avatar).mouth.box, engine.info.fps)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"contact_{name}.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    back = cv2.imread(str(path))
    assert back is not None and back.shape[0] > 500 and back.std() > 20
    return path


def test_contact_sheet_photo(engine, sentence):
    print("wrote", _sheet(engine, None, sentence, "photo"))


def test_contact_sheet_cartoon(engine, cartoon_dir, sentence):
    print("wrote", _sheet(engine, cartoon_dir, sentence, "cartoon"))


def test_renders_over_100_frames_per_second_on_one_thread(engine, sentence):
    cv2.setNumThreads(1)
    s = engine.open_session(None)
    chunks = [sentence[i:i + 640] for i in range(0, len(sentence) - 639, 640)]
    run(s, sentence[: 640 * 20])  # warm up
    t0 = time.process_time()
    for c in chunks:
        s.generate(c, speaking=bool(np.abs(c).max() > 1e-4))
    ms = 1000 * (time.process_time() - t0) / len(chunks)
    print(f"CPU {ms:.2f} ms/frame at 512x512 = {1000 / ms:.0f} frames/s")
    assert ms < 10.0
