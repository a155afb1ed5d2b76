"""Language detection and the language-dependent voice."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from livekit.agents import tts

from dialogue.language import detect_language


@pytest.mark.parametrize("text,lang", [
    ("What are your opening hours?", "en"),
    ("你们几点开门？", "zh"),
    ("我想问一下 credit card 的年费", "zh"),
    ("Can I pay with 支付宝?", "en"),
    ("ok", "en"),
    ("好的", "zh"),
])
def test_detect_language(text, lang):
    assert detect_language(text) == lang


def test_no_letters_keeps_default():
    assert detect_language("12345", default="zh") == "zh"


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")


class _ToneTTS(tts.TTS):
    """A stand-in for Piper: a 440 Hz tone at 16 kHz."""

    def __init__(self):
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=16000, num_channels=1)
        self.calls = []

    def synthesize(self, text, *, conn_options=None):
        self.calls.append(text)
        from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

        return _ToneStream(tts=self, input_text=text, conn_options=conn_options or DEFAULT_API_CONNECT_OPTIONS)


class _ToneStream(tts.ChunkedStream):
    async def _run(self, output_emitter):
        output_emitter.initialize(request_id="tone", sample_rate=16000, num_channels=1, mime_type="audio/pcm")
        t = np.arange(1600) / 16000
        output_emitter.push((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
        output_emitter.flush()


async def _collect(stream) -> tuple[int, int]:
    n, rate = 0, 0
    async with stream:
        async for ev in stream:
            n += ev.frame.samples_per_channel
            rate = ev.frame.sample_rate
    return n, rate


@needs_espeak
async def test_espeak_speaks_mandarin():
    from agent.language import EspeakTTS

    engine = EspeakTTS(language="zh")
    n, rate = await _collect(engine.synthesize("您好，欢迎致电海港银行。"))
    assert rate == 22050 and n > 22050 * 0.5  # more than half a second of speech


@needs_espeak
async def test_bilingual_tts_routes_by_language():
    from agent.language import BilingualTTS, EspeakTTS

    piper = _ToneTTS()
    router = BilingualTTS({"en": piper, "zh": EspeakTTS(language="zh", sample_rate=16000)})
    n_en, rate_en = await _collect(router.synthesize("Hello, how can I help?"))
    assert piper.calls == ["Hello, how can I help?"] and 1600 <= n_en < 3200 and rate_en == 16000
    n_zh, rate_zh = await _collect(router.synthesize("请问有什么可以帮您？"))
    assert len(piper.calls) == 1 and rate_zh == 16000 and n_zh > 8000
