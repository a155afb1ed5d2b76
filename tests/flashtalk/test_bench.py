"""The benchmark script itself: tiny size on CPU with 1 and 2 ranks, and the full-size guards."""

from __future__ import annotations

import re

import torch

from avatar.engines.flashtalk import bench


def test_tiny_bench_runs_on_1_and_2_ranks(capsys):
    assert bench.main(["--tiny", "--device", "cpu", "--chunks", "2", "--ranks", "1,2", "--threads", "1",
                       "--width", "32", "--height", "32"]) == 0
    out = capsys.readouterr().out
    for n in (1, 2):
        assert f"flashtalk bench: {n} rank(s)" in out
        assert f"summary, {n} rank(s)" in out
    # per chunk: the critical path, the period, every stage
    lines = [ln for ln in out.splitlines() if ln.strip().startswith(("warm-up:", "chunk 1:"))]
    assert len(lines) == 4
    for ln in lines:
        assert re.search(r"critical path [\d.]+ ms, period [\d.]+ ms", ln)
        for stage in ("audio_encode", "dit_step", "vae_decode", "color_tail", "motion_encode", "finish"):
            assert stage + "=" in ln
    assert re.search(r"real-time factor [\d.]+", out) and "speed-up" in out


def test_full_size_without_gpus_says_so(capsys, monkeypatch):
    assert bench.main(["--full-size", "--device", "cpu"]) == 2
    assert "far too big for a CPU" in capsys.readouterr().err
    # a box with 2 GPUs asked for 4 and 8: both skipped with the reason, nothing built
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(bench, "random_pipeline", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    assert bench.main(["--full-size", "--device", "cuda", "--ranks", "4,8"]) == 2
    captured = capsys.readouterr()
    assert "4 ranks: skipped, only 2 GPU(s) visible" in captured.out
    assert "8 ranks: skipped" in captured.out and "nothing measured" in captured.err


def test_fp8_is_skipped_with_a_reason_on_cpu():
    from avatar.engines.flashtalk.fp8 import quantize_dit_fp8
    from avatar.engines.flashtalk.modeling_dit import FlashTalkDiT
    from avatar.engines.flashtalk.tiny import tiny_dit_config

    model = FlashTalkDiT(tiny_dit_config())
    why = quantize_dit_fp8(model)
    assert why and ("torchao" in why or "CUDA" in why)
    assert isinstance(model.blocks[0].ffn[0], torch.nn.Linear) and model.blocks[0].ffn[0].weight.dtype == torch.float32
