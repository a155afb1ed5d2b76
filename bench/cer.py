"""Character error rate of the call's recogniser on the Mandarin speech set, and its time per utterance.

    python -m bench.cer [--voice neural|espeak] [--detect] [--window utterance|full] [--raw] [--prompt]

Builds the set when it is missing (:mod:`bench.zh_speech`: 48 bank and tutoring
questions with noise at 20/15/10 dB), then runs the agent's own ``WhisperEngine`` on
each utterance. Default: language forced to ``zh``; ``--detect`` lets the engine choose
among en/zh as a bilingual call does (and counts the utterances it sent to English).
References and hypotheses are compared in their spoken form: both are normalised
(digits -> Chinese numbers), punctuation and spaces dropped, and the hypothesis
converted to simplified characters as the call does (``--raw``: not converted, to see what
that conversion is worth). ``--prompt``: a domain-word initial prompt (see
:data:`DOMAIN_PROMPT`), to measure whether it helps. ``--json PATH`` writes every utterance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import unicodedata
from pathlib import Path

import numpy as np

from bench import zh_speech

DOMAIN_PROMPT = "以下是银行和课程辅导的客服电话：营业时间、银行卡、挂失、转账、手续费、账户、网点、密码、课程、报名、老师、试听。"


def spoken(text: str) -> str:
    """The characters that are spoken: normalised, no punctuation, no spaces, lower case."""
    from agent.zh_text import normalize_zh

    text = normalize_zh(text)
    return "".join(c for c in text.lower() if not unicodedata.category(c).startswith(("P", "Z", "S")))


def edit_distance(a: str | list[str], b: str | list[str]) -> int:
    """Levenshtein distance between two sequences (characters, or words)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(refs: list[str], hyps: list[str]) -> float:
    errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    return errors / max(1, sum(len(r) for r in refs))


def transcribe_with_prompt(engine, audio: np.ndarray, language: str, prompt: str):
    """The engine's decode with ``prompt`` as Whisper's previous text (an experiment, not the call's path)."""
    from faster_whisper.tokenizer import Tokenizer

    from agent.stt import MAX_FRAMES, SAMPLE_RATE, Transcript, trim_repetition

    t0 = time.perf_counter()
    m = engine._model
    padded = np.concatenate([audio, np.zeros(int(engine._tail_pad * SAMPLE_RATE), np.float32)])
    feats = m.feature_extractor(padded, padding=0)
    n = min(MAX_FRAMES, feats.shape[1] - feats.shape[1] % 2)
    encoded = m.encode(feats[:, :n])
    tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=language)
    p = m.get_prompt(tok, tok.encode(" " + prompt.strip()), without_timestamps=True)
    budget = int(engine._tokens_per_second * len(audio) / SAMPLE_RATE) + 10
    res = m.model.generate(encoded, [p], beam_size=engine._beam, max_length=min(448, len(p) + budget),
                           suppress_blank=True, suppress_tokens=[-1], return_scores=False)[0]
    tokens = [t for t in res.sequences_ids[0] if t < tok.eot]
    kept, cut = trim_repetition(tokens)
    return Transcript(tok.decode(kept).strip(), language, time.perf_counter() - t0, cut or len(tokens) >= budget - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voice", choices=("neural", "espeak"), default="neural")
    ap.add_argument("--set", type=Path, default=None, help="folder of the speech set (default: the cache)")
    ap.add_argument("--detect", action="store_true", help="detect the language among en,zh instead of forcing zh")
    ap.add_argument("--window", choices=("utterance", "full"), default=None)
    ap.add_argument("--raw", action="store_true", help="no traditional -> simplified conversion")
    ap.add_argument("--prompt", action="store_true", help="a domain-word initial prompt")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from agent.language import to_simplified
    from agent.settings import AgentSettings
    from agent.stt import WhisperEngine

    s = AgentSettings()
    folder = args.set or zh_speech.default_dir(args.voice)
    index = zh_speech.build(folder, voice=args.voice)
    t0 = time.perf_counter()
    engine = WhisperEngine(s.model_path(s.whisper_model), compute_type=s.whisper_compute_type,
                           cpu_threads=args.threads or s.whisper_threads, languages=("en", "zh"),
                           window=args.window or s.whisper_window)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    engine.transcribe(np.zeros(RATE_WARM, np.float32), "zh")  # first decode pays one-off set-up
    rows = []
    for e in index:
        audio = zh_speech.load(folder / e["file"])
        if args.prompt:
            res = transcribe_with_prompt(engine, audio, "zh", DOMAIN_PROMPT)
        else:
            res = engine.transcribe(audio, None if args.detect else "zh", ("en", "zh"))
        text = res.text if args.raw or res.language != "zh" else to_simplified(res.text)
        rows.append({**e, "heard": text, "language": res.language, "asr_s": round(res.seconds, 3),
                     "truncated": res.truncated, "ref_spoken": spoken(e["text"]), "hyp_spoken": spoken(text)})
    refs = [r["ref_spoken"] for r in rows]
    hyps = [r["hyp_spoken"] for r in rows]
    times = [r["asr_s"] for r in rows]
    audio_s = sum(r["seconds"] for r in rows)
    mode = ("detect en/zh" if args.detect else "zh forced") + (", raw" if args.raw else ", t2s") + (
        ", domain prompt" if args.prompt else "")
    print(f"speech set: {len(rows)} utterances ({args.voice} voice, {audio_s:.0f} s) in {folder}")
    print(f"recogniser: {engine.model_dir.name}, {s.whisper_compute_type}, window={engine._window}, {mode}; "
          f"load {load_s:.2f} s")
    print(f"CER {100 * cer(refs, hyps):.1f}%  (sentences exactly right: "
          f"{sum(r == h for r, h in zip(refs, hyps))}/{len(rows)})")
    for snr in zh_speech.SNRS:
        sel = [r for r in rows if r["snr_db"] == snr]
        print(f"  SNR {snr:.0f} dB: CER {100 * cer([r['ref_spoken'] for r in sel], [r['hyp_spoken'] for r in sel]):.1f}%"
              f" over {len(sel)}")
    for dom in ("bank", "tutoring"):
        sel = [r for r in rows if r["domain"] == dom]
        print(f"  {dom}: CER {100 * cer([r['ref_spoken'] for r in sel], [r['hyp_spoken'] for r in sel]):.1f}%")
    if args.detect:
        print(f"  detected as zh: {sum(r['language'] == 'zh' for r in rows)}/{len(rows)}")
    trad = sum(r["heard"] != to_simplified(r["heard"]) for r in rows)
    print(f"  transcripts with traditional characters{' (raw)' if args.raw else ' after conversion'}: {trad}/{len(rows)}")
    print(f"time per utterance: mean {statistics.mean(times):.2f} s, median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s; real-time factor {sum(times) / audio_s:.2f}; loops cut: "
          f"{sum(r['truncated'] for r in rows)}")
    worst = sorted(rows, key=lambda r: -edit_distance(r["ref_spoken"], r["hyp_spoken"]) / max(1, len(r["ref_spoken"])))
    for r in worst[:5]:
        print(f"  {r['text']} -> {r['heard']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


RATE_WARM = 16000

if __name__ == "__main__":
    main()
