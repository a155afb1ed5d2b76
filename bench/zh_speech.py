"""A Mandarin speech set of our own: bank and tutoring questions, spoken by the Mandarin voice, with noise.

    python -m bench.zh_speech [--out DIR]     # writes DIR/NNN.wav and DIR/index.json

Each utterance is synthesised by the call's Mandarin voice (:mod:`agent.zh_tts`) at a
speaking rate between 0.9x and 1.1x, resampled to 16 kHz, and mixed with noise (a
white + pink mix, some with a mains hum) at an SNR of 20, 15 or 10 dB, cycling, with a
fixed seed: the set is the same on every machine. ``--voice espeak`` speaks it with
espeak-ng's ``cmn-latn-pinyin`` voice instead (a second, very different speaker).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import wave
from math import gcd
from pathlib import Path

import numpy as np

from agent.paths import cache_root

RATE = 16000
SNRS = (20.0, 15.0, 10.0)

# (domain, text): what callers of a bank and a tutoring service ask.
UTTERANCES: list[tuple[str, str]] = [
    ("bank", "你们的营业时间是什么时候？"),
    ("bank", "银行卡丢了怎么办？"),
    ("bank", "我想挂失我的信用卡。"),
    ("bank", "怎么开储蓄账户？"),
    ("bank", "开户需要带什么证件？"),
    ("bank", "最近的网点在哪里？"),
    ("bank", "跨行转账收费吗？"),
    ("bank", "转账手续费是多少？"),
    ("bank", "忘记网银密码怎么办？"),
    ("bank", "我的银行卡被冻结了。"),
    ("bank", "周末可以去网点办理业务吗？"),
    ("bank", "信用卡的还款日是哪一天？"),
    ("bank", "我想查询一下账户余额。"),
    ("bank", "定期存款的利率是多少？"),
    ("bank", "怎么修改手机银行的登录密码？"),
    ("bank", "我想办理一张新的借记卡。"),
    ("bank", "外币兑换需要预约吗？"),
    ("bank", "为什么我的转账还没有到账？"),
    ("bank", "我收到一条可疑的短信。"),
    ("bank", "请帮我转人工客服。"),
    ("bank", "每天的转账限额是多少？"),
    ("bank", "贷款申请需要多长时间？"),
    ("bank", "我想提前还清房贷。"),
    ("bank", "你们总行的地址是什么？"),
    ("tutoring", "你们有哪些数学课程？"),
    ("tutoring", "我想给孩子报名三年级的数学课。"),
    ("tutoring", "一节课多少钱？"),
    ("tutoring", "可以先试听一节课吗？"),
    ("tutoring", "英语课是线上还是线下？"),
    ("tutoring", "老师都有教师资格证吗？"),
    ("tutoring", "每节课上多长时间？"),
    ("tutoring", "周六下午有没有物理课？"),
    ("tutoring", "怎么取消已经预约的课程？"),
    ("tutoring", "请假的话课时可以保留吗？"),
    ("tutoring", "你们的退费政策是什么？"),
    ("tutoring", "一个班有多少个学生？"),
    ("tutoring", "有没有一对一的辅导？"),
    ("tutoring", "高中化学的老师是谁？"),
    ("tutoring", "我想了解一下编程课。"),
    ("tutoring", "孩子上完课会有作业吗？"),
    ("tutoring", "学费可以分期付款吗？"),
    ("tutoring", "暑假班什么时候开始报名？"),
    ("tutoring", "能不能换一个老师？"),
    ("tutoring", "上课的教室在几楼？"),
    ("tutoring", "语文阅读理解怎么提高？"),
    ("tutoring", "考试前有没有冲刺班？"),
    ("tutoring", "我想预约一次学习评估。"),
    ("tutoring", "家长可以旁听吗？"),
]


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = gcd(src, dst)
    return resample_poly(audio.astype(np.float32), dst // g, src // g).astype(np.float32)


def noise(n: int, rng: np.random.Generator, *, hum: bool) -> np.ndarray:
    """White + pink noise (and a 50 Hz hum with harmonics), unit RMS."""
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    pink /= pink.std() + 1e-9
    out = 0.5 * white + pink
    if hum:
        t = np.arange(n) / RATE
        out += sum(0.6 / k * np.sin(2 * np.pi * 50 * k * t + k) for k in (1, 2, 3))
    return (out / (out.std() + 1e-9)).astype(np.float32)


def mix(speech: np.ndarray, snr_db: float, rng: np.random.Generator, *, hum: bool) -> np.ndarray:
    """``speech`` with 0.3 s of lead-in and tail, noise at ``snr_db`` over the speech's active power."""
    pad = np.zeros(int(0.3 * RATE), np.float32)
    s = np.concatenate([pad, speech, pad])
    active = speech[np.abs(speech) > 0.02 * np.abs(speech).max()] if speech.size else speech
    p_speech = float(np.mean(active**2)) if active.size else 1e-6
    nz = noise(len(s), rng, hum=hum) * np.sqrt(p_speech / 10 ** (snr_db / 10))
    return np.clip(s + nz, -1.0, 1.0)


def speak_neural(texts: list[str], speeds: list[float]) -> list[np.ndarray]:
    from agent.settings import AgentSettings
    from agent.zh_text import normalize_zh
    from agent.zh_tts import MandarinVoiceModel

    s = AgentSettings()
    model = MandarinVoiceModel(s.model_path(s.zh_voice))
    out = []
    for text, speed in zip(texts, speeds):
        model.speed = speed
        out.append(_resample(model.synthesize(normalize_zh(text)), model.sample_rate, RATE))
    return out


def speak_espeak(texts: list[str], speeds: list[float]) -> list[np.ndarray]:
    import io

    from agent.zh_text import normalize_zh

    out = []
    for text, speed in zip(texts, speeds):
        wav = subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", str(int(150 * speed)), "--stdout", "--",
                              normalize_zh(text)], check=True, capture_output=True).stdout
        with wave.open(io.BytesIO(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
        out.append(_resample(pcm, rate, RATE))
    return out


def build(out: Path, *, voice: str = "neural", seed: int = 20) -> list[dict]:
    """Write the set to ``out`` (skipped when its index is already there); returns the index."""
    index_path = out / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if len(index) == len(UTTERANCES) and all((out / e["file"]).exists() for e in index):
            return index
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    speeds = [float(x) for x in rng.uniform(0.9, 1.1, len(UTTERANCES))]
    texts = [t for _, t in UTTERANCES]
    speech = (speak_espeak if voice == "espeak" else speak_neural)(texts, speeds)
    index = []
    for i, ((domain, text), audio, speed) in enumerate(zip(UTTERANCES, speech, speeds)):
        snr = SNRS[i % len(SNRS)]
        hum = i % 4 == 3
        noisy = mix(audio, snr, rng, hum=hum)
        name = f"{i:03d}.wav"
        with wave.open(str(out / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((noisy * 32767).astype(np.int16).tobytes())
        index.append({"file": name, "text": text, "domain": domain, "snr_db": snr, "hum": hum,
                      "speed": round(speed, 3), "seconds": round(len(noisy) / RATE, 2), "voice": voice})
    index_path.write_text(json.dumps(index, ensure_ascii=False, indent=1), encoding="utf-8")
    return index


def default_dir(voice: str = "neural") -> Path:
    return cache_root() / "bench" / f"zh-speech-{voice}"


def load(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voice", choices=("neural", "espeak"), default="neural")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or default_dir(args.voice)
    index = build(out, voice=args.voice)
    print(f"{len(index)} utterances, {sum(e['seconds'] for e in index):.0f} s of speech in {out}")


if __name__ == "__main__":
    main()
