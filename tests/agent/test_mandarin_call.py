"""A Mandarin caller through the real stack: livekit-server on loopback, the real agent and avatar workers.

The caller speaks Mandarin questions (the Mandarin voice, 16 kHz) into the room; what it
hears back is transcribed again and must be Chinese and come from the bank's Chinese
knowledge. A mixed call switches language with each question. The end of the caller's
speech -> first answer audio is measured for each Chinese turn.
"""

from __future__ import annotations

import statistics
import uuid

import numpy as np
import pytest

from agent.language import to_simplified
from agent.token import caller_token
from dialogue.language import detect_language
from harness.caller import ScriptedCaller

pytestmark = pytest.mark.e2e

# (question, words of the knowledge's answer; the heard answer must hold at least `need` of them)
ZH_QUESTIONS = [
    ("你们的营业时间是什么时候？", ("周一", "周五", "九点", "五点", "营业"), 2),
    ("银行卡丢了怎么办？", ("冻结", "挂失", "手机银行", "热线", "银行卡"), 2),
    ("跨行转账收费吗？", ("转账", "免费", "两元", "手续费", "每笔"), 2),
]


@pytest.fixture(scope="module")
def say_zh(agent_settings):
    """A Mandarin question in the Mandarin voice, int16 at 16 kHz."""
    from math import gcd

    from scipy.signal import resample_poly

    from agent.zh_text import normalize_zh
    from agent.zh_tts import MandarinVoiceModel

    model = MandarinVoiceModel(agent_settings.model_path(agent_settings.zh_voice))

    def _say(text: str) -> np.ndarray:
        audio = model.synthesize(normalize_zh(text))
        g = gcd(model.sample_rate, 16000)
        audio = resample_poly(audio, 16000 // g, model.sample_rate // g)
        return (np.clip(audio, -1, 1) * 32767).astype(np.int16)

    return _say


def hear(whisper, pcm: np.ndarray, language: str | None = None) -> tuple[str, str]:
    """What the caller heard, as Whisper writes it (simplified), and the language Whisper detected."""
    segments, info = whisper.transcribe(pcm.astype(np.float32) / 32768.0, language=language, beam_size=1)
    text = "".join(s.text for s in segments).strip()
    return to_simplified(text), info.language


def spoken(text: str) -> str:
    """Whisper writes a number as digits or as words ("9点" or "九点"): compare as the voice says it."""
    from agent.zh_text import normalize_zh

    return normalize_zh(text, keep_english=True)


def han(text: str) -> int:
    return sum("\u4e00" <= c <= "\u9fff" for c in text)


async def new_caller(url: str) -> ScriptedCaller:
    caller = ScriptedCaller(url, caller_token(f"test-zh-{uuid.uuid4().hex[:6]}", "caller"))
    await caller.join()
    return caller


def agent_said(caller: ScriptedCaller, t_from: float) -> str:
    """The agent's published transcription (what it meant to say) since ``t_from`` (caller clock)."""
    return " ".join(t["text"] for t in caller.transcripts
                    if t["t"] + caller.t0 >= t_from and t["from"] != caller.room.local_participant.identity)


async def test_a_mandarin_caller_is_answered_in_mandarin_from_the_knowledge(stack, say_zh, whisper):
    caller = await new_caller(stack.url)
    latencies = []
    try:
        assert await caller.wait_video(timeout=60), "the avatar's video track never arrived"
        await caller.wait_greeting()
        for question, words, need in ZH_QUESTIONS:
            turn = await caller.ask(question, say_zh(question))
            latencies.append(turn.first_audio - turn.speech_end)
            heard, lang = hear(whisper, caller.audio_between(turn.first_audio - 0.3, turn.answer_end + 0.3))
            said = agent_said(caller, turn.speech_end)
            found = [w for w in words if w in spoken(heard)]
            print(f"{question} -> heard [{lang}] {heard!r} (agent text {said!r}); "
                  f"{1000 * latencies[-1]:.0f} ms to first audio")
            # The answer is Mandarin speech...
            assert lang == "zh" and han(heard) >= 6 and detect_language(heard) == "zh", heard
            # ...and it is the knowledge's answer, as a person on the line hears it
            assert len(found) >= need, (question, heard, said)
            assert detect_language(said) == "zh" and any(w in said for w in words), said
    finally:
        await caller.leave()
    med = statistics.median(latencies)
    print(f"Chinese call: end of speech -> first audio {', '.join(f'{1000 * x:.0f}' for x in latencies)} ms "
          f"(median {1000 * med:.0f} ms)")
    assert max(latencies) < 6.0, latencies


async def test_a_mixed_call_switches_language_with_each_question(stack, say, say_zh, whisper):
    caller = await new_caller(stack.url)
    script = [
        ("en", "What are your opening hours?", ("monday", "friday", "nine")),
        ("zh", "你们的营业时间是什么时候？", ("周一", "周五", "九点", "五点", "营业")),
        ("en", "How do I report a lost card?", ("card", "freeze", "block", "app", "hotline")),
        ("zh", "银行卡丢了怎么办？", ("冻结", "挂失", "手机银行", "热线", "银行卡")),
    ]
    try:
        assert await caller.wait_video(timeout=60)
        await caller.wait_greeting()
        for lang, question, words in script:
            pcm = say(question) if lang == "en" else say_zh(question)
            turn = await caller.ask(question, pcm)
            heard, detected = hear(whisper, caller.audio_between(turn.first_audio - 0.3, turn.answer_end + 0.3))
            print(f"[{lang}] {question} -> heard [{detected}] {heard!r}; "
                  f"{1000 * (turn.first_audio - turn.speech_end):.0f} ms to first audio")
            assert detected == lang and detect_language(heard) == lang, (question, heard)
            assert any(w in (heard.lower() if lang == "en" else spoken(heard)) for w in words), (question, heard)
    finally:
        await caller.leave()
