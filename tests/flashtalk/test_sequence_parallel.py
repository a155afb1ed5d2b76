"""Sequence parallelism on CPU (gloo): N ranks render the same frames as one.

The engine in this test process is rank 0 (as in the avatar worker); it starts the other ranks
as processes itself (``avatar.engines.flashtalk.launch``). The tiny DiT here has 4 heads, so 2
and 4 ranks take the Ulysses all-to-all path; a 3-rank DiT call with a token count that does not
split evenly takes the all-gather path with padding.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from avatar.engines import create_engine

SPF, CHUNK = 640, 28


@pytest.fixture(scope="module")
def sp_ckpt(tmp_path_factory):
    from avatar.engines.flashtalk.tiny import build_tiny_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_checkpoint(
        tmp_path_factory.mktemp("flashtalk-sp"), width=64, height=64, dit_overrides={"num_heads": 4}
    )
    torch.set_num_threads(threads)


def _render(engine, chunks: int = 2) -> list[torch.Tensor]:
    """fp32 frames of a few chunks of speech (motion carried across them)."""
    session = engine.open_session(None)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(chunks):
        audio = (0.1 * rng.standard_normal(CHUNK * SPF)).astype(np.float32)
        out.append(session.stream.submit(audio, raw=True).result())
    session.close()
    return out


def test_2_and_4_ranks_render_the_frames_of_1_rank(sp_ckpt):
    one = create_engine("flashtalk", **sp_ckpt)
    reference = _render(one)
    assert all(f.shape == (CHUNK, 3, 64, 64) and f.dtype == torch.float32 for f in reference)
    for world in (2, 4):
        engine = create_engine("flashtalk", **{**sp_ckpt, "sequence_parallel": world})
        try:
            assert engine.group.world == world and engine.pipeline.sp.rank == 0
            frames = _render(engine)
            procs = engine.group.procs
        finally:
            engine.close()
        diff = max((a - b).abs().max().item() for a, b in zip(frames, reference))
        assert diff <= 1e-5, f"{world} ranks differ from 1 rank by {diff}"
        # the followers exited with the engine
        assert [p.returncode for p in procs] == [0] * (world - 1)
    # and the frames are not trivially equal because nothing moves: chunks differ
    assert (reference[0] - reference[1]).abs().max() > 1e-3


def _dit_rank(rank: int, world: int, init_file: str, out_file: str) -> None:
    """One rank of the DiT-level check (run by torch.multiprocessing)."""
    import torch.distributed as dist

    from avatar.engines.flashtalk.parallel import SequenceParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        inputs = _dit_inputs()
        model = inputs.pop("model")
        with torch.no_grad():
            out = model(**inputs, sp=SequenceParallel())
        if rank == 0:
            torch.save(out, out_file)
    finally:
        dist.destroy_process_group()


def _dit_inputs() -> dict:
    from avatar.engines.flashtalk.modeling_dit import FlashTalkDiT
    from avatar.engines.flashtalk.tiny import tiny_dit_config

    torch.manual_seed(0)
    cfg = tiny_dit_config(num_heads=4)
    model = FlashTalkDiT(cfg).eval()
    # 5 latent frames of 4x4 latents -> 5 x 2 x 2 = 20 tokens: 3 ranks get 7, 7, 6 (+1 padding);
    # shards start inside latent frames (4 tokens each)
    t_lat, h, w = 5, 4, 4
    return {
        "model": model,
        "x": torch.randn(1, cfg.out_dim, t_lat, h, w),
        "t": torch.tensor([937.5]),
        "y": torch.randn(1, cfg.in_dim - cfg.out_dim, t_lat, h, w),
        "audio": torch.randn(1, 1 + 4 * (t_lat - 1), cfg.audio_window, cfg.audio_blocks, cfg.audio_channels),
        "text": [torch.randn(7, cfg.text_dim)],
        "clip_fea": torch.randn(1, cfg.clip_tokens, cfg.clip_dim),
    }


def test_dit_on_3_ranks_with_uneven_heads_and_tokens():
    """4 heads over 3 ranks (no Ulysses split: keys/values all-gathered) and 20 tokens (padded to 21)."""
    inputs = _dit_inputs()
    model = inputs.pop("model")
    with torch.no_grad():
        expected = model(**inputs)
    with tempfile.TemporaryDirectory() as tmp:
        init, out = os.path.join(tmp, "init"), os.path.join(tmp, "out.pt")
        # fork: the children inherit the imported torch (a fresh interpreter per rank costs seconds here)
        mp.start_processes(_dit_rank, args=(3, init, out), nprocs=3, join=True, start_method="fork")
        got = torch.load(out)
    assert got.shape == expected.shape == (1, 16, 5, 4, 4)
    assert (got - expected).abs().max().item() <= 1e-5


def test_token_layout_frame_runs():
    from avatar.engines.flashtalk.parallel import TokenLayout

    z = torch.zeros(1)
    # 3 frames of 4 tokens, a shard of 5 tokens starting at token 3 -> frame 0: 1 token, frame 1: 4
    layout = TokenLayout((3, 2, 2), z, z, start=3, local=5, total=12)
    assert layout.frame_runs() == [(0, 0, 1), (1, 1, 5)]
    # the last shard holds 2 real tokens and 2 padding tokens: padding is not attended
    layout = TokenLayout((3, 2, 2), z, z, start=10, local=4, total=12)
    assert layout.frame_runs() == [(2, 0, 2)]


def test_sequence_parallel_needs_the_gpus(sp_ckpt):
    from avatar.engines.base import EngineError

    if torch.cuda.is_available():
        pytest.skip("a GPU box")
    with pytest.raises(EngineError, match="CUDA"):
        create_engine("flashtalk", **{**sp_ckpt, "device": "cuda", "sequence_parallel": 2})
