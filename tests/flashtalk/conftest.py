"""Shared fixtures: one tiny random-weight checkpoint in the official layout per test session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="package")
def tiny_ckpt(tmp_path_factory):
    """Engine settings for a tiny checkpoint (64x64, with a prepared default avatar)."""
    from avatar.engines.flashtalk.tiny import build_tiny_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster on a shared 2-core box
    yield build_tiny_checkpoint(
        tmp_path_factory.mktemp("flashtalk-tiny"), width=64, height=64
    )
    torch.set_num_threads(
        threads
    )  # the engine's threads=1 setting is process-wide: give it back


@pytest.fixture(scope="package")
def tiny_engine(tiny_ckpt):
    """One loaded engine shared by the streaming tests (as the worker shares one per process)."""
    from avatar.engines import create_engine

    return create_engine("flashtalk", **tiny_ckpt)
