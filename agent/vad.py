"""Voice activity for barge-in: speech is what was voiced, not the silence after it.

Silero's stream keeps counting ``speech_duration`` through the silence that must pass
before it declares the end of speech (``min_silence``). The framework interrupts the
agent once ``speech_duration`` reaches ``interruption.min_duration``, so a 150 ms cough
followed by 250 ms of silence counted as 400 ms of speech and stopped the avatar.
:class:`VoicedVAD` wraps any VAD and reports, while silence is accumulating, only the
voiced part (``speech_duration - raw_accumulated_silence``). Everything else passes
through unchanged.
"""

from __future__ import annotations

import dataclasses

from livekit.agents import vad as lk_vad


class VoicedVAD(lk_vad.VAD):
    """A VAD whose ``speech_duration`` counts voiced audio only (see the module docstring)."""

    def __init__(self, inner: lk_vad.VAD) -> None:
        super().__init__(capabilities=inner.capabilities)
        self.inner = inner

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def min_silence_duration(self) -> float | None:
        # the framework checks this against its turn detector's needs
        return getattr(self.inner, "min_silence_duration", None)

    def stream(self) -> lk_vad.VADStream:
        return _VoicedStream(self, self.inner.stream())


class _VoicedStream(lk_vad.VADStream):
    def __init__(self, vad: VoicedVAD, inner: lk_vad.VADStream) -> None:
        self._inner = inner
        super().__init__(vad)

    async def _main_task(self) -> None:
        import asyncio

        async def _forward_input() -> None:
            async for item in self._input_ch:
                if isinstance(item, lk_vad.VADStream._FlushSentinel):
                    self._inner.flush()
                else:
                    self._inner.push_frame(item)
            self._inner.end_input()

        feeder = asyncio.create_task(_forward_input())
        try:
            async for ev in self._inner:
                if ev.type == lk_vad.VADEventType.INFERENCE_DONE and ev.speaking and ev.raw_accumulated_silence > 0:
                    ev = dataclasses.replace(ev, speech_duration=max(0.0, ev.speech_duration - ev.raw_accumulated_silence))
                self._event_ch.send_nowait(ev)
        finally:
            feeder.cancel()
            await self._inner.aclose()
