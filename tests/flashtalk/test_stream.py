"""The streaming session: chunking, alignment, motion state, determinism, idle and interruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar.engines import create_engine
from avatar.engines.base import EngineError

SPF = 640  # 16 kHz / 25 fps
CHUNK = 28  # frame_num 33 - motion_frames 5


def _speech(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_engine_info(tiny_engine):
    info = tiny_engine.info
    assert (info.name, info.sample_rate, info.fps, info.chunk_frames) == (
        "flashtalk",
        16000,
        25,
        CHUNK,
    )
    assert info.samples_per_chunk == CHUNK * SPF == 17920
    assert (info.width, info.height) == (64, 64)


def test_frames_per_chunk_and_alignment_over_chunks(tiny_engine, monkeypatch):
    session = tiny_engine.open_session(None)
    stream = session.stream
    pipe = stream.pipe
    rings = []
    real = pipe.encode_audio
    monkeypatch.setattr(
        pipe, "encode_audio", lambda ring: (rings.append(ring.copy()), real(ring))[1]
    )
    chunks = [_speech(CHUNK * SPF, seed=i) for i in range(3)]
    for i, audio in enumerate(chunks):
        frames = session.generate(audio, speaking=True)
        assert len(frames) == CHUNK
        assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
        ring = rings[-1]
        # the 28 emitted frames are the ring's last 28 frames: exactly this chunk's audio
        assert np.array_equal(ring[-CHUNK * SPF :], audio)
        # the 5 motion frames before them hold the previous chunk's tail, or silence on the first
        # chunk: the video never leads the audio
        lead = ring[-33 * SPF : -CHUNK * SPF]
        expected = (
            np.zeros(5 * SPF, np.float32) if i == 0 else chunks[i - 1][-5 * SPF :]
        )
        assert np.array_equal(lead, expected)
    assert stream.chunks_done == 3


def test_motion_latent_shapes(tiny_engine):
    session = tiny_engine.open_session(None)
    stream = session.stream
    assert tuple(stream.motion.shape) == (
        1,
        16,
        1,
        8,
        8,
    )  # first chunk: the reference's latent
    session.generate(_speech(CHUNK * SPF), speaking=True)
    assert tuple(stream.motion.shape) == (
        1,
        16,
        2,
        8,
        8,
    )  # then VAE.encode(last 5 frames)
    session.generate(_speech(CHUNK * SPF, 1), speaking=True)
    assert tuple(stream.motion.shape) == (1, 16, 2, 8, 8)


def test_any_chunk_sizes_and_tail_padding(tiny_engine):
    stream = tiny_engine.open_session(None).stream
    audio = _speech(int(2.5 * CHUNK * SPF))
    frames = []
    for piece in np.array_split(audio, 7):  # odd sizes
        frames.extend(stream.push(piece))
    assert len(frames) == 2 * CHUNK
    assert len(stream.pending) == len(audio) - 2 * CHUNK * SPF
    tail = stream.flush()  # the leftover half chunk is padded with silence, not dropped
    assert len(tail) == CHUNK and len(stream.pending) == 0
    assert stream.flush() == []


def test_generate_refuses_another_size(tiny_engine):
    """The generator cuts speech into chunks of the engine's size; the engine does not re-cut."""
    from avatar.engines.base import EngineError

    session = tiny_engine.open_session(None)
    with pytest.raises(EngineError, match=f"renders {CHUNK * SPF} samples per call, got 1000"):
        session.generate(_speech(1000), speaking=True)
    assert len(session.generate(_speech(CHUNK * SPF), speaking=True)) == CHUNK


def test_determinism_under_seed(tiny_ckpt, tiny_engine):
    audio = [_speech(CHUNK * SPF, seed=i) for i in range(2)]

    def run(engine):
        s = engine.open_session(None)
        return [f for a in audio for f in s.generate(a, speaking=True)]

    a, b = run(tiny_engine), run(tiny_engine)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = create_engine("flashtalk", **{**tiny_ckpt, "seed": 7})
    c = run(other)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_idle_generation(tiny_engine):
    session = tiny_engine.open_session(None)
    silence = np.zeros(CHUNK * SPF, np.float32)
    for _ in range(2):
        frames = session.generate(silence, speaking=False)
        assert len(frames) == CHUNK
    # silent buffers are encoded once and reused
    assert session.stream.pipe._silence_features is not None


def test_interruption_mid_stream(tiny_engine):
    session = tiny_engine.open_session(None)
    stream = session.stream
    session.generate(_speech(CHUNK * SPF), speaking=True)
    stream.push(
        _speech(CHUNK * SPF // 2, seed=3)
    )  # half a chunk pending when the user barges in
    motion = stream.motion.clone()
    session.interrupt()
    assert len(stream.pending) == 0 and not stream.ring.any()
    assert torch.equal(
        stream.motion, motion
    )  # the next chunk continues from the last shown frames
    frames = session.generate(np.zeros(CHUNK * SPF, np.float32), speaking=False)
    assert len(frames) == CHUNK and all(
        f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames
    )
    assert stream.chunks_done == 2  # the dropped half chunk was never rendered


def test_colour_correction_setting(tiny_ckpt):
    audio = _speech(CHUNK * SPF)
    off = create_engine(
        "flashtalk", **{**tiny_ckpt, "color_correction": 0.0}
    ).open_session(None)
    on = create_engine(
        "flashtalk", **{**tiny_ckpt, "color_correction": 1.0}
    ).open_session(None)
    f_off, f_on = off.generate(audio, speaking=True), on.generate(audio, speaking=True)
    assert not np.array_equal(f_off[0], f_on[0])
    ref = ((on.stream.reference.permute(1, 2, 0) + 1) * 127.5).numpy()
    # corrected frames sit closer to the reference's average colour
    assert (
        np.abs(f_on[0].reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).sum()
        < np.abs(f_off[0].reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).sum()
    )


def test_session_needs_an_avatar(tiny_ckpt):
    engine = create_engine("flashtalk", **{**tiny_ckpt, "default_avatar": None})
    with pytest.raises(EngineError, match="prepare"):
        engine.open_session(None)


def test_avatar_resolution_mismatch_is_explained(tiny_ckpt):
    engine = create_engine("flashtalk", **{**tiny_ckpt, "width": 96, "height": 64})
    with pytest.raises(EngineError, match="prepare the avatar again"):
        engine.open_session(None)


def test_bad_settings_are_one_sentence():
    with pytest.raises(EngineError, match="checkpoint_dir"):
        create_engine("flashtalk", device="cpu")
    with pytest.raises(EngineError, match="frame_num"):
        create_engine("flashtalk", frame_num=30)


def test_bf16_path_runs_on_cpu(tiny_ckpt):
    # the CUDA configuration (bf16 DiT with fp32 timestep/head/norms, VAE under bf16 autocast) on CPU
    engine = create_engine(
        "flashtalk", **{**tiny_ckpt, "dtype": "bfloat16", "vae_dtype": "bfloat16"}
    )
    pipe = engine.pipeline
    assert pipe.dit.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert (
        pipe.vae.conv1.weight.dtype == torch.float32
        and pipe.vae_dtype == torch.bfloat16
    )  # fp32 weights, autocast
    session = engine.open_session(None)
    frames = session.generate(_speech(CHUNK * SPF), speaking=True)
    assert len(frames) == CHUNK and frames[0].dtype == np.uint8
    assert session.stream.motion.dtype == torch.float32


def test_benchmark_paths(capsys):
    """The benchmark's random-weight path (what --full-size runs on a GPU), at tiny sizes on CPU."""
    from transformers import Wav2Vec2Config

    from avatar.engines.flashtalk import bench
    from avatar.engines.flashtalk.settings import FlashTalkSettings
    from avatar.engines.flashtalk.tiny import tiny_dit_config, tiny_vae_config

    s = FlashTalkSettings.from_kwargs(
        device="cpu", dtype="bfloat16", width=32, height=32
    )
    w2v = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)  # fmt: skip
    pipe, feats = bench.random_pipeline(s, tiny_dit_config(), tiny_vae_config(), w2v)
    frames = pipe.open_stream(feats).push(np.zeros(CHUNK * SPF, np.float32))
    assert len(frames) == CHUNK and frames[0].shape == (32, 32, 3)
    from avatar.engines.flashtalk.modeling_dit import DiTConfig

    # the official chunk: 9 latent frames of 96x56 -> 12,096 tokens, about 474 TFLOP per DiT step
    assert 4.6e14 < bench.dit_flops_per_step(DiTConfig(), 9, 96, 56) < 4.9e14
    # --full-size refuses politely on CPU
    assert bench.main(["--full-size", "--device", "cpu"]) == 2
    assert "far too big for a CPU" in capsys.readouterr().err
