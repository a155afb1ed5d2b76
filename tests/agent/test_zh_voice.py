"""The Mandarin voice and the recogniser's Chinese: real models, real audio."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import numpy as np
import pytest
from livekit import rtc

from agent.language import CallLanguage, to_simplified
from agent.zh_text import normalize_zh
from bench.cer import cer, spoken


def _to16k(audio: np.ndarray, rate: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, 16000)
    return resample_poly(audio.astype(np.float32), 16000 // g, rate // g).astype(np.float32)


@pytest.fixture(scope="module")
def zh_folder(agent_settings):
    folder = agent_settings.model_path(agent_settings.zh_voice)
    if not (folder / "fastspeech2-baker.tflite").exists():
        pytest.fail(f"Mandarin voice missing at {folder}: run `make models`")
    return folder


@pytest.fixture(scope="module")
def zh_model(zh_folder):
    from agent.zh_tts import MandarinVoiceModel

    return MandarinVoiceModel(zh_folder)


def _hear(whisper, audio16: np.ndarray) -> str:
    segments, _ = whisper.transcribe(audio16, language="zh", beam_size=1)
    return to_simplified("".join(s.text for s in segments))


def test_the_patched_voice_has_no_tensorflow_ops_and_is_deterministic(zh_folder, zh_model):
    from ai_edge_litert import schema_py_generated as S

    model = S.Model.GetRootAsModel((zh_folder / "fastspeech2-baker.tflite").read_bytes(), 0)
    graph = model.Subgraphs(0)
    used = {graph.Operators(i).OpcodeIndex() for i in range(graph.OperatorsLength())}
    customs = [model.OperatorCodes(i).CustomCode() for i in used]
    assert not [c for c in customs if c], customs  # every op in use is a LiteRT builtin
    a = zh_model.synthesize_phrase("您好欢迎致电海港银行")
    b = zh_model.synthesize_phrase("您好欢迎致电海港银行")
    assert a.size > 0.8 * 24000 and np.array_equal(a, b)


def test_front_end_reads_phrases_with_tones(zh_model):
    fe = zh_model.front
    assert fe.syllables("银行行长") == ["yin2", "hang2", "hang2", "zhang3"]
    assert fe.phonemes("你好") == ["sil", "n", "i3", "#0", "h", "ao3", "sil"]
    assert fe.phonemes("一个")[:3] == ["sil", "^", "i2"]  # the tone change of 一
    assert [p for p, _ in fe.phrases("您好，欢迎致电。请问？")] == ["您好", "欢迎致电", "请问"]


def test_whisper_understands_the_mandarin_voice(zh_model, whisper):
    texts = ["你们的营业时间是什么时候？", "银行卡丢了怎么办？", "我想给孩子报名三年级的数学课。",
             "跨行转账每笔收取2元手续费。"]
    heard = [_hear(whisper, _to16k(zh_model.synthesize(normalize_zh(t)), 24000)) for t in texts]
    rate = cer([spoken(t) for t in texts], [spoken(h) for h in heard])
    print(f"CER of Whisper base on the voice: {rate:.2f}", heard)
    assert rate < 0.25, heard
    assert "两元" in spoken(heard[3]) or "2元" in heard[3] or "二元" in heard[3], heard[3]


async def _collect(stream) -> tuple[np.ndarray, int]:
    chunks, rate = [], 0
    async with stream:
        async for ev in stream:
            chunks.append(np.frombuffer(ev.frame.data, np.int16))
            rate = ev.frame.sample_rate
    return np.concatenate(chunks).astype(np.float32) / 32768.0, rate


async def test_mixed_sentence_english_word_goes_to_the_english_voice(zh_model, agent_settings, whisper):
    from agent.tts import PiperTTS
    from agent.zh_tts import MandarinTTS

    piper = PiperTTS(agent_settings.model_path(agent_settings.piper_voice))
    voice = MandarinTTS(zh_model, english=piper)
    audio, rate = await _collect(voice.synthesize("请在 app 里打开 statement 页面。"))
    assert rate == 24000 and audio.size > 24000
    alone, _ = await _collect(MandarinTTS(zh_model).synthesize("请在 app 里打开页面。"))
    # "statement" is spoken by Piper: the mixed sentence is longer by about an English word
    assert 0.3 < (audio.size - alone.size) / 24000 < 1.5
    # "app", spelled with the Chinese letter names (ei pi pi), is heard as the word
    heard = _hear(whisper, _to16k(alone, 24000)).lower().replace(" ", "")
    assert "app" in heard and "打开" in heard, heard


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_fallback_reads_hanzi_as_mandarin_not_english():
    from agent.language import ESPEAK_VOICES

    phonemes = subprocess.run(["espeak-ng", "-q", "-x", "-v", ESPEAK_VOICES["zh"], normalize_zh("营业时间是9:00")],
                              capture_output=True, text=True, check=True).stdout
    assert "(en)" not in phonemes and any(c.isdigit() for c in phonemes), phonemes  # tones, not English


def test_traditional_to_simplified():
    assert to_simplified("銀行卡丟了怎麼辦？") == "银行卡丢了怎么办？"
    assert to_simplified("我想給孩子報名3年級的數學課") == "我想给孩子报名3年级的数学课"
    assert to_simplified("营业时间") == "营业时间"


def test_call_language_is_kept_against_a_doubtful_utterance_and_follows_a_clear_one():
    call = CallLanguage()
    assert call.accepts("你们的营业时间是什么时候", "zh", 2.2, False) and call.current == "zh"
    assert not call.accepts("you", "en", 0.5, False) and call.current == "zh"  # a cough heard as English
    assert not call.accepts("1 2 3", "en", 1.5, False) and call.current == "zh"  # no English words in it
    assert not call.accepts("嗯", "en", 1.2, False) and call.current == "zh"
    assert call.accepts("What are your opening hours?", "en", 1.8, False) and call.current == "en"
    assert call.accepts("银行卡丢了怎么办", "zh", 2.0, False) and call.current == "zh"
    assert (call.switches, call.kept) == (2, 3)


def _frame(audio16: np.ndarray) -> rtc.AudioFrame:
    pcm = (np.clip(audio16, -1, 1) * 32767).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))


async def test_a_calls_recogniser_keeps_chinese_through_noise_and_switches_for_english(zh_model, agent_settings, say):
    """The call's own STT: Chinese, then a noise burst, then English, then Chinese again."""
    from agent.stt import WhisperEngine, WhisperSTT

    engine = WhisperEngine(agent_settings.model_path(agent_settings.whisper_model), languages=("en", "zh"))
    stt_ = WhisperSTT(engine, languages=("en", "zh"))
    rng = np.random.default_rng(3)

    async def hear(audio16: np.ndarray):
        ev = await stt_.recognize([_frame(audio16)])
        return ev.alternatives[0]

    zh1 = await hear(_to16k(zh_model.synthesize("银行卡丢了怎么办？"), 24000))
    assert zh1.language == "zh" and "银行卡" in zh1.text, zh1.text  # simplified
    noise = (0.05 * rng.standard_normal(8000)).astype(np.float32)  # half a second of line noise
    burst = await hear(noise)
    assert burst.language == "zh", (burst.language, burst.text)
    en = await hear(say("What are your opening hours?").astype(np.float32) / 32768.0)
    assert en.language == "en" and "hours" in en.text.lower(), en.text
    zh2 = await hear(_to16k(zh_model.synthesize("忘记网银密码怎么办？"), 24000))
    assert zh2.language == "zh" and "密码" in zh2.text, zh2.text
    engine.shutdown()
    await asyncio.sleep(0)


async def test_the_calls_mandarin_voice_starts_at_once_and_falls_back_to_espeak(agent_settings, tmp_path):
    import time

    from agent.language import EspeakTTS
    from agent.zh_tts import MandarinTTS, mandarin_voice

    t0 = time.perf_counter()
    voice = mandarin_voice(agent_settings)
    assert isinstance(voice, MandarinTTS) and time.perf_counter() - t0 < 0.1  # the model loads in the background
    audio, rate = await _collect(voice.synthesize("您好，欢迎致电海港银行。"))
    assert rate == 24000 and audio.size > 24000

    missing = agent_settings.model_copy(update={"models_dir": tmp_path})
    fallback = mandarin_voice(missing, sample_rate=16000)
    assert isinstance(fallback, EspeakTTS) and fallback.model == "cmn-latn-pinyin"
