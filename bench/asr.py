"""Word error rate of the agent's Whisper: Whisper's 30 s window against the utterance-sized one.

    python -m bench.asr [--out out/bench/asr.json]

A speech set of our own, built on the spot from local voices: English questions
spoken by Piper and by espeak-ng, Mandarin ones by espeak-ng (``cmn-latn-pinyin``);
a third with white noise (20 dB SNR), a third with a 400 ms pause at a comma. Each
utterance is recognised with ``window="full"`` and ``window="utterance"``; the command
prints WER (English, words) and CER (Mandarin, characters), the seconds per utterance,
and how often the short window's loop guard fired.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from agent.settings import AgentSettings
from agent.stt import WhisperEngine
from bench.cer import edit_distance
from harness.caller import synthesize

EN = [
    "What are your opening hours?", "How do I report a lost card?", "Where is the nearest branch?",
    "Can I open an account online?", "What is the fee for an international transfer?",
    "I forgot my online banking password.", "How long does a transfer take to arrive?",
    "Can I change the limit on my debit card?", "Do you offer student accounts?",
    "I would like to speak to a person, please.", "Is there a cash machine near the station?",
    "My card was swallowed by the machine yesterday.", "How much does a replacement card cost?",
    "Can I pay my bills with the mobile app?", "What documents do I need to open an account?",
    "When do you open on Saturdays?", "Do you have lessons on Sundays?", "How much is a trial lesson?",
    "Can my daughter join the maths class?", "What time does the evening course start?",
    "Is the teacher a native speaker?", "How many students are in a group?",
    "Can I cancel a lesson the day before?", "Do you help with homework?",
    "Where can I track my order?", "I want to return a pair of shoes.", "How long is the delivery?",
    "Do you ship to another country?", "My parcel arrived damaged.", "Can I pay when the parcel arrives?",
    "Someone took money from my account and it was not me.", "I think my card has been stolen.",
    "Please block my card right now.", "Thank you, that is all for today.",
    "Could you tell me the interest rate on savings?", "I moved house and need to change my address.",
    "Is it safe to give my card number on the phone?", "What happens if my account goes overdrawn?",
    "Can I get a loan for a new car?", "Goodbye.",
]
ZH = [
    "你们的营业时间是什么时候", "我的银行卡丢了怎么办", "最近的网点在哪里", "我想开一个账户",
    "国际汇款要多少手续费", "我忘记了网上银行的密码", "转账多久能到账", "我想和人工客服通话",
    "周六几点开门", "周日有课吗", "试听课多少钱", "我的女儿可以上数学课吗", "晚上的课程几点开始",
    "一个班有多少学生", "我的包裹在哪里", "我想退货", "快递要几天", "可以货到付款吗",
    "有人从我的账户里取了钱", "请马上冻结我的银行卡", "谢谢，再见",
]
RATE = 16000


def espeak_say(text: str, voice: str) -> np.ndarray:
    import io
    import wave

    from scipy.signal import resample_poly

    out = subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "--stdout", "--", text], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        sr = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    from math import gcd

    g = gcd(sr, RATE)
    return resample_poly(pcm, RATE // g, sr // g).astype(np.float32)


def with_pause(say, text: str, pause: float = 0.4) -> np.ndarray:
    """Split at the first comma-like break (or the middle word) and leave ``pause`` seconds between."""
    if re.search(r"[\u4e00-\u9fff]", text):
        mid = len(text) // 2
        a, b = text[:mid], text[mid:]
    else:
        words = text.split()
        a, b = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2:])
    return np.concatenate([say(a), np.zeros(int(pause * RATE), np.float32), say(b)])


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    p = float(np.mean(x**2)) or 1e-8
    return (x + rng.standard_normal(len(x)).astype(np.float32) * np.sqrt(p / 10 ** (snr_db / 10))).astype(np.float32)


def build_set() -> list[dict]:
    rng = np.random.default_rng(7)
    piper_path = AgentSettings().model_path(AgentSettings().piper_voice)
    items = []
    for i, text in enumerate(EN):
        engine = "piper" if i % 2 == 0 else "espeak"
        say = (lambda t: synthesize(t, piper_path).astype(np.float32) / 32768.0) if engine == "piper" else (
            lambda t: espeak_say(t, "en-us"))
        kind = ("clean", "noise", "pause")[i % 3]
        audio = with_pause(say, text) if kind == "pause" and len(text.split()) > 3 else say(text)
        if kind == "noise":
            audio = add_noise(audio, 20, rng)
        items.append({"lang": "en", "text": text, "voice": engine, "kind": kind, "audio": audio})
    for i, text in enumerate(ZH):
        kind = ("clean", "noise", "pause")[i % 3]
        say = lambda t: espeak_say(t, "cmn-latn-pinyin")  # noqa: E731
        audio = with_pause(say, text) if kind == "pause" else say(text)
        if kind == "noise":
            audio = add_noise(audio, 20, rng)
        items.append({"lang": "zh", "text": text, "voice": "espeak", "kind": kind, "audio": audio})
    return items


def _norm_words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def _norm_chars(text: str) -> list[str]:
    return [c for c in text if re.match(r"[\u4e00-\u9fff\w]", c)]


def error_rate(refs: list[list[str]], hyps: list[list[str]]) -> float:
    errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    return errors / max(1, sum(len(r) for r in refs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/bench/asr.json")
    args = ap.parse_args()
    s = AgentSettings()
    items = build_set()
    print(f"speech set: {len(items)} utterances ({sum(i['lang'] == 'en' for i in items)} en, "
          f"{sum(i['lang'] == 'zh' for i in items)} zh; clean / 20 dB noise / 400 ms pause)", flush=True)
    results: dict = {}
    for window in ("full", "utterance"):
        eng = WhisperEngine(s.model_path(s.whisper_model), compute_type=s.whisper_compute_type,
                            cpu_threads=s.whisper_threads, languages=s.language_list, window=window)  # type: ignore[arg-type]
        rows = []
        for it in items:
            t0 = time.perf_counter()
            r = eng.transcribe(it["audio"])
            rows.append({"lang": it["lang"], "kind": it["kind"], "ref": it["text"], "hyp": r.text,
                         "detected": r.language, "seconds": time.perf_counter() - t0, "loop_cut": r.truncated})
        results[window] = rows
        eng.shutdown()
    print(f"\n{'':<22}{'full (30 s)':>14}{'utterance':>14}")
    summary = {}
    for lang, unit, norm in (("en", "WER", _norm_words), ("zh", "CER", _norm_chars)):
        for kind in ("clean", "noise", "pause", None):
            label = f"{lang} {unit} {kind or 'all'}"
            vals = []
            for window in ("full", "utterance"):
                rows = [r for r in results[window] if r["lang"] == lang and (kind is None or r["kind"] == kind)]
                vals.append(100 * error_rate([norm(r["ref"]) for r in rows], [norm(r["hyp"]) for r in rows]))
            summary[label] = vals
            print(f"{label:<22}{vals[0]:>13.1f}%{vals[1]:>13.1f}%")
    for window in ("full", "utterance"):
        secs = [r["seconds"] for r in results[window]]
        lang_ok = np.mean([r["detected"] == r["lang"] for r in results[window]])
        print(f"{window:<10} median {1000 * statistics.median(secs):.0f} ms per utterance, "
              f"p95 {1000 * float(np.percentile(secs, 95)):.0f} ms; language right {100 * lang_ok:.0f} %; "
              f"loop guard fired {sum(r['loop_cut'] for r in results[window])}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": results}, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
