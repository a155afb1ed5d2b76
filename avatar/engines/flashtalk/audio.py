"""Audio encoder: chinese-wav2vec2-base through transformers, FlashTalk's way.

16 kHz mono -> loudness-normalised to -23 LUFS (left alone when it measures as silence)
-> wav2vec2 feature extractor (50 Hz) -> linear interpolation (align_corners) to the video
frame rate -> feature projection -> encoder with every layer's output kept
-> [T_video, layers, width] -> per video frame a window of offsets -2..+2 (clamped).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base import EngineError

logger = logging.getLogger("avatar.engines.flashtalk")

TARGET_LUFS = -23.0


def loudness_normalize(
    audio: np.ndarray, sample_rate: int = 16000, target: float = TARGET_LUFS
) -> np.ndarray:
    """Normalise to ``target`` LUFS; audio whose loudness magnitude exceeds 100 (silence) is returned as is."""
    import pyloudnorm as pyln

    audio = np.asarray(audio, dtype=np.float64)
    meter = pyln.Meter(sample_rate)
    if len(audio) < int(meter.block_size * sample_rate):
        return audio.astype(np.float32)  # too short to measure
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # pyloudnorm warns about clipping; upstream ignores it too
        loudness = meter.integrated_loudness(audio)
        if not np.isfinite(loudness) or abs(loudness) > 100:
            return audio.astype(np.float32)
        return pyln.normalize.loudness(audio, loudness, target).astype(np.float32)


def frame_windows(
    features: torch.Tensor, start: int, end: int, radius: int = 2
) -> torch.Tensor:
    """[T, layers, C] -> [1, end-start, 2*radius+1, layers, C]: per frame the offsets -radius..+radius.

    Indices are clamped to [0, T-1], so the newest frames see no look-ahead (they repeat the last).
    """
    offsets = torch.arange(-radius, radius + 1, device=features.device)
    idx = (
        torch.arange(start, end, device=features.device).unsqueeze(1) + offsets
    ).clamp(0, features.shape[0] - 1)
    return features[idx].unsqueeze(0)


class AudioEncoder:
    """Wraps a transformers ``Wav2Vec2Model`` + ``Wav2Vec2FeatureExtractor`` loaded from a folder."""

    def __init__(
        self,
        folder: str | Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        fps: int = 25,
    ) -> None:
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise EngineError(
                f"wav2vec2 folder {folder} has no config.json; set wav2vec_dir to chinese-wav2vec2-base."
            )
        self.extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
        # wav2vec stays in fp32 on CPU; on GPU it follows the engine dtype
        self.model = (
            Wav2Vec2Model.from_pretrained(str(folder), dtype=dtype).to(device).eval()
        )
        self.device = device
        self.dtype = dtype
        self.fps = fps
        self.sample_rate = int(self.extractor.sampling_rate)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, audio: np.ndarray, *, normalize: bool = True) -> torch.Tensor:
        """16 kHz mono -> [int(seconds * fps), layers, width] fp32 (one row per video frame)."""
        if normalize:
            audio = loudness_normalize(audio, self.sample_rate)
        n_frames = int(len(audio) / self.sample_rate * self.fps)
        values = self.extractor(
            audio, sampling_rate=self.sample_rate, return_tensors="pt"
        ).input_values
        values = values.to(self.device, self.dtype)
        m = self.model
        feats = m.feature_extractor(values)  # [1, C_conv, T50]
        feats = F.interpolate(
            feats.float(), size=n_frames, mode="linear", align_corners=True
        ).to(self.dtype)
        hidden, _ = m.feature_projection(feats.transpose(1, 2))  # [1, T, width]

        # every layer's output = hidden_states[1:] in transformers' convention
        outputs: list[torch.Tensor] = []
        hooks = [
            layer.register_forward_hook(
                lambda _m, _i, out: outputs.append(
                    out[0] if isinstance(out, tuple) else out
                )
            )
            for layer in m.encoder.layers
        ]
        try:
            m.encoder(hidden)
        finally:
            for h in hooks:
                h.remove()
        if getattr(m.config, "do_stable_layer_norm", False):
            outputs[-1] = m.encoder.layer_norm(
                outputs[-1]
            )  # the stable variant norms the last state
        return torch.stack(outputs, dim=2)[0].float()  # [T, layers, width]
