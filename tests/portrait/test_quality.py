"""Behaviour on real speech: lip sync, identity kept, smooth motion, interruption, idle life."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .conftest import envelope, mouth_aperture, run


def test_mouth_aperture_follows_the_speech_envelope(still_engine, sentence):
    frames, states = run(still_engine.open_session(None), sentence)
    ap = mouth_aperture(frames, still_engine.rig())
    env = envelope(sentence)[: len(ap)]
    r = float(np.corrcoef(ap, env)[0, 1])
    print(f"Pearson(mouth aperture in pixels, RMS envelope) = {r:.3f} over {len(ap)} frames")
    assert r >= 0.6
    # The mouth really opens during speech and is shut in the pauses around it.
    assert max(st.open for st in states) > 0.5
    assert states[5].open == 0.0 and states[-3].open < 0.02


def test_pixels_away_from_mouth_jaw_and_eyes_keep_the_portrait(still_engine, engine, sentence):
    frames, _ = run(still_engine.open_session(None), sentence)
    rig = still_engine.rig()
    keep = np.ones(frames.shape[1:3], bool)
    for box in [rig.mouth.box] + [e.box for e in rig.eyes]:
        keep[box.sl] = False
    assert keep.mean() > 0.75
    diff = np.abs(frames.astype(np.int16) - rig.base.astype(np.int16))
    assert diff[:, keep].max() == 0  # without head sway: bit-exact
    # With head sway: only the head moves (sub-pixel to ~2 px), the rest of the picture is untouched.
    frames, _ = run(engine.open_session(None), sentence)
    rig = engine.rig()
    outside_head = np.ones(frames.shape[1:3], bool)
    outside_head[rig.head.box.sl] = False
    diff = np.abs(frames.astype(np.int16) - rig.base.astype(np.int16))
    assert diff[:, outside_head].max() == 0
    assert diff[:, keep].mean() < 4.0


def test_no_frame_jumps_from_its_neighbour(engine, sentence):
    s = engine.open_session(None)
    half = (len(sentence) // 2 // 640) * 640
    a, st_a = run(s, sentence[:half])
    s.interrupt()  # barge-in mid-word must be smooth too
    b, st_b = run(s, np.zeros(640 * 25, np.float32), speaking=False)
    frames = np.concatenate([a, b]).astype(np.int16)
    opens = np.array([st.open for st in st_a + st_b])
    step = np.abs(np.diff(frames, axis=0))
    sl = engine.rig().mouth.box.sl
    full = step.mean(axis=(1, 2, 3))
    mouth = step[:, sl[0], sl[1]].mean(axis=(1, 2, 3))
    print(f"largest frame-to-frame change: whole frame {full.max():.2f}, mouth box {mouth.max():.2f} levels")
    assert full.max() < 3.0
    assert mouth.max() < 16.0
    assert np.abs(np.diff(opens)).max() <= 0.36


def test_interrupt_closes_the_mouth_within_100_ms(still_engine, sentence):
    s = still_engine.open_session(None)
    frames, states = run(s, sentence[: 640 * 60])
    loud = int(np.argmax([st.open for st in states]))
    s2 = still_engine.open_session(None)
    run(s2, sentence[: 640 * (loud + 1)])
    before = s2.state.open
    assert before > 0.3
    s2.interrupt()
    after, st = run(s2, np.zeros(640 * 3, np.float32), speaking=False)
    opens = [x.open for x in st]
    assert 0 < opens[0] < before  # a closing frame, not a snap
    assert opens[1] <= 0.05 * before  # 80 ms: within a pixel of closed
    assert opens[2] == 0.0
    rig = still_engine.rig()
    assert np.array_equal(after[2][rig.mouth.box.sl], rig.base[rig.mouth.box.sl])


def test_end_of_segment_closes_smoothly(still_engine, sentence):
    s = still_engine.open_session(None)
    n = (len(sentence) // 2 // 640) * 640
    run(s, sentence[:n])  # stop mid-sentence: speaking=False from here on
    _, st = run(s, np.zeros(640 * 10, np.float32), speaking=False)
    opens = [x.open for x in st]
    assert opens[-1] < 0.01
    assert all(b <= a for a, b in zip(opens, opens[1:]))


def _vowel(f1: float, f2: float, seconds: float = 1.2, f0: float = 120.0) -> np.ndarray:
    """A synthetic sustained vowel: glottal pulses through two formant resonators, fixed loudness."""
    sr = 16000
    n = int(seconds * sr)
    src = np.zeros(n)
    src[:: int(sr / f0)] = 1.0
    y = src
    for f, bw in ((f1, 80.0), (f2, 120.0)):
        r = np.exp(-np.pi * bw / sr)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], y)
    y = y / np.sqrt(np.mean(y**2)) * 0.1
    return y.astype(np.float32)


def test_mouth_shape_follows_the_vowel_not_only_loudness(still_engine):
    """Same loudness, different vowels: "aa" opens widest, "ee" spreads, "oo" rounds."""
    shapes = {}
    for name, f1, f2 in (("aa", 750, 1200), ("ee", 300, 2300), ("oo", 320, 800)):
        s = still_engine.open_session(None)
        _, st = run(s, _vowel(f1, f2))
        tail = st[-10:]
        shapes[name] = (np.mean([x.open for x in tail]), np.mean([x.spread for x in tail]))
    print({k: tuple(round(float(v), 2) for v in vals) for k, vals in shapes.items()})
    assert shapes["aa"][0] > shapes["ee"][0] + 0.1 and shapes["aa"][0] > shapes["oo"][0] + 0.1
    assert shapes["ee"][1] > 0.3 > shapes["aa"][1] > shapes["oo"][1]
    assert shapes["oo"][1] < -0.3


def test_open_mouth_shows_an_interior_not_a_smear(still_engine, sentence):
    frames, states = run(still_engine.open_session(None), sentence)
    i = int(np.argmax([st.open for st in states]))
    rig = still_engine.rig()
    m = rig.mouth
    # Look right around the lips (the mouth box also holds the dark sweater below the chin).
    ox, oy = m.origin.astype(int)
    hw, jaw = int(m.hw), states[i].open * m.j_max
    sl = (slice(oy - int(0.3 * hw), oy + int(jaw) + 2), slice(ox - hw, ox + hw))
    lum = frames[i][sl].astype(float) @ [0.299, 0.587, 0.114]
    base_lum = rig.base[sl].astype(float) @ [0.299, 0.587, 0.114]
    new_dark = int((lum < 70).sum() - (base_lum < 70).sum())
    print(f"open={states[i].open:.2f}: {new_dark} new dark cavity pixels")
    assert new_dark > 0.5 * hw * jaw


def test_idle_face_blinks_breathes_and_sways(engine):
    s = engine.open_session(None)
    frames, states = run(s, np.zeros(640 * 25 * 20, np.float32), speaking=False)  # 20 s listening
    blinks = sum(1 for a, b in zip(states, states[1:]) if a.blink < 0.5 <= b.blink)
    assert 2 <= blinks <= 12, blinks
    dy = np.array([st.dy for st in states])
    assert 0.3 < dy.max() - dy.min() < 8  # visible but small, in pixels
    assert max(abs(st.roll) for st in states) < 0.03  # under two degrees
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.2


def test_cartoon_portrait_talks_too(cartoon_dir, engine, sentence):
    s = engine.open_session(cartoon_dir)
    frames, _ = run(s, sentence)
    ap = mouth_aperture(frames, engine.rig(cartoon_dir))
    r = float(np.corrcoef(ap, envelope(sentence)[: len(ap)])[0, 1])
    print(f"cartoon: Pearson(aperture, envelope) = {r:.3f}")
    assert r >= 0.6
